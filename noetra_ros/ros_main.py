"""The `main()` every node shares: init, spin, and a clean stop on SIGINT and SIGTERM.

rclpy's own signal handlers shut the ROS context down from inside the signal handler, while the
executor may be half-way through a callback; that callback's next publish then fails with
`RCLError: publisher's context is invalid` and the process exits 1 with a traceback (seen on
sim_node publishing an image when `ros2 launch`, `docker stop` or systemd sent SIGTERM). Here a
signal only asks the spin loop to stop: the running callback finishes, the node is destroyed
(its threads stopped) while the context is still valid, then rclpy is shut down, and the process
exits 0.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
import ctypes
import os
import signal
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from noetra_ros.bringup import PARENT_PID_ENV
from noetra_ros.core.errors import NoetraError
from noetra_ros.ros_params import read_only_guard

# The signals that mean "stop now, cleanly": Ctrl-C / `ros2 launch` (SIGINT) and systemd,
# `docker stop` and `ros2 launch` after its grace period (SIGTERM).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long the spin loop may block before it looks at a stop request again: a Python signal
# handler runs only when the main thread is back in Python, not inside rcl_wait.
STOP_POLL_S = 0.1
EXIT_CONFIG_ERROR = 2
# PARENT_PID_ENV is set by `noetra run` (cli.CellProcesses) to its own pid. The node asks the
# kernel for a SIGTERM when that process ends, so a `noetra run` killed with SIGKILL (or by the
# OOM killer) does not leave its cell running on the domain, where the next run on it would find
# (and refuse) it or, worse, join it. Linux only; the kernel sends it when the *thread* that
# started the node ends: for `noetra run` its main thread; for `noetra eval --workers` the Ray
# worker's task thread, which lives as long as the worker (a worker that ended a task thread
# mid-episode would stop that episode's nodes, and the episode would fail, not hang).
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def stop_with_parent(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Ask for SIGTERM when the process named by NOETRA_PARENT_PID ends (and send it now if
    it already has); True when that is in place. The variable is removed, so a process this
    one starts does not inherit it."""
    parent = environ.pop(PARENT_PID_ENV, '')
    if not parent.isdigit() or not sys.platform.startswith('linux'):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    if os.getppid() != int(parent):  # it ended before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
    return True


class StopRequest:
    """Set by SIGINT / SIGTERM; the spin loop checks it between callbacks."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name = ''

    def __call__(self, signum: int, frame) -> None:  # the Python signal handler
        if not self._event.is_set():
            self.signal_name = signal.Signals(signum).name
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def install(self) -> dict[int, object]:
        """Make every STOP_SIGNALS call this (and let them through); returns the previous
        handlers."""
        previous = {signum: signal.signal(signum, self) for signum in STOP_SIGNALS}
        # A blocked signal stays blocked through fork and exec: a node started from a thread
        # that blocks SIGINT (a Ray worker's task thread does) would never see its stop
        # request, and `noetra eval --workers` could only SIGKILL it after the grace period.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return previous


def run_node(factory: Callable[[], Node], logger_name: str, args=None) -> None:
    """Create the node with `factory`, spin it until SIGINT / SIGTERM, and stop it cleanly.

    A NoetraError while building the node (bad parameter, unknown robot, missing model) ends the
    process with one fatal log line naming the problem and exit code 2, not a traceback. A stop
    signal ends it with exit code 0 once the node is destroyed and rclpy is shut down.
    """
    stop = StopRequest()
    # Installed before rclpy.init so that a signal during a slow start (model loading) also
    # ends in the clean path below; rclpy is told to install none of its own.
    previous = stop.install()
    stop_with_parent()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    logger = rclpy.logging.get_logger(logger_name)
    node = None
    executor = SingleThreadedExecutor()
    try:
        node = factory()
        read_only_guard(node)  # also for a node that declared nothing through ros_params
        executor.add_node(node)
        while not stop.requested and rclpy.ok():
            executor.spin_once(timeout_sec=STOP_POLL_S)
    except ExternalShutdownException:
        pass  # someone else shut the context down: nothing left to spin
    except NoetraError as exc:
        logger.fatal(str(exc))
        raise SystemExit(EXIT_CONFIG_ERROR) from exc
    finally:
        if stop.requested:
            logger.info(f'{stop.signal_name}: shutting down')
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

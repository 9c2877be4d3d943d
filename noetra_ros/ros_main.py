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

from collections.abc import Callable
import signal
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from noetra_ros.core.errors import NoetraError
from noetra_ros.ros_params import read_only_guard

# The signals that mean "stop now, cleanly": Ctrl-C / `ros2 launch` (SIGINT) and systemd,
# `docker stop` and `ros2 launch` after its grace period (SIGTERM).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long the spin loop may block before it looks at a stop request again: a Python signal
# handler runs only when the main thread is back in Python, not inside rcl_wait.
STOP_POLL_S = 0.1
EXIT_CONFIG_ERROR = 2


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
        """Make every STOP_SIGNALS call this; returns the previous handlers."""
        return {signum: signal.signal(signum, self) for signum in STOP_SIGNALS}


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

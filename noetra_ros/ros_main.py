"""The `main()` every node shares (Jazzy-style init / spin / shutdown)."""
from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from noetra_ros.core.errors import NoetraError


def run_node(factory: Callable[[], Node], logger_name: str, args=None) -> None:
    """Create the node with `factory` and spin it until Ctrl-C or an external shutdown.

    A NoetraError while building the node (bad parameter, unknown robot, missing model) ends the
    process with one fatal log line naming the problem and exit code 2, not a traceback.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except NoetraError as exc:
        rclpy.logging.get_logger(logger_name).fatal(str(exc))
        raise SystemExit(2) from exc
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()

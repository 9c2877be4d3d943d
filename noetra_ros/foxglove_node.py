"""foxglove_node: the cell's topics, live, in Foxglove (a WebSocket server of foxglove-sdk).

Started by `noetra run <cell> --foxglove`, the launch file's `foxglove:=true`, or alone
(`python -m noetra_ros.foxglove_node --ros-args -p port:=8765`). Foxglove connects to the URL
it logs (Open connection -> Foxglove WebSocket -> ws://127.0.0.1:8765); the layout
config/foxglove/noetra_cell.json shows the cameras, the robot (URDF + tf), joint states,
commands and the supervisor. How to use it: docs/VIEWING.md.

- **Topics**: every topic the graph shows (discovered every `discovery_period_s`; `topics`
  narrows it, `exclude` leaves some out: core/recording.TopicSelection, as the recorder), each
  subscribed `raw=True` with a QoS that hears every publisher (core/recording.subscription_qos),
  and relayed as the CDR bytes rclpy received on a Foxglove channel with the `ros2msg` schema
  the recorder writes into its bags (core/recording.MessageDefinitions), so Foxglove decodes
  every type of the cell, ours included, exactly as in a recorded MCAP. Channel topics are the
  fully qualified ROS names (`/joint_states`), as in the bags, so one layout fits both.
- **Time**: a message's time is its receive time on the node's clock (sim time in a simulated
  cell), as the recorder's log time.
- **Latched topics** (transient local: robot_description, /tf_static, safety/status, ...): the
  last message is kept and sent again when a client subscribes (the SDK has no latching), so a
  client that connects late still gets the robot model and the static frames.
- **Images**: at most `max_image_hz` per image topic (Image and CompressedImage) go out, so a
  browser over Wi-Fi keeps up; 0 relays every one.
- **Network**: the server binds to `host` (127.0.0.1 by default: this machine only). Binding to
  another address shows the camera images to anyone who can reach it: an operator's choice.

It never publishes to the robot: its only ROS endpoints are subscriptions (and rclpy's own
/rosout and /parameter_events), and clients cannot publish, call services or set parameters
through the server (no capabilities are advertised).
"""
from __future__ import annotations

from dataclasses import dataclass
import time

import foxglove
from foxglove.websocket import ChannelView, Client, ServerListener
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from noetra_ros.bringup import FOXGLOVE_HOST, FOXGLOVE_PORT, foxglove_url
from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.recording import (COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, MessageDefinitions,
                                       OfferedQos, subscription_qos, TopicSelection)
from noetra_ros.qos import offered_policies, recording_qos
from noetra_ros.recorder_node import ament_share_dirs, message_class
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
# A viewer wants the newest messages, not every one: a short queue per subscription.
QUEUE_DEPTH = 10
PARAMETERS = {
    'host': (FOXGLOVE_HOST, 'address the WebSocket server binds to; 127.0.0.1: this machine '
                            'only (0.0.0.0 shows the cameras to the whole network)'),
    'port': (FOXGLOVE_PORT, 'WebSocket server port (0: any free port, logged at start)'),
    'topics': ([], 'topics or fnmatch patterns to relay; empty: every topic discovered'),
    'exclude': (['/parameter_events'], 'topics or patterns never relayed'),
    'max_image_hz': (10.0, 'most images relayed per second and image topic; 0: every one'),
    'discovery_period_s': (0.5, 'wall seconds between two looks for new topics'),
}


class ImageThrottle:
    """At most `max_hz` messages per second on one topic (0: no limit); `due(now_s)` says
    whether the message arriving at `now_s` (monotonic seconds) goes out."""

    def __init__(self, max_hz: float) -> None:
        self.min_interval_s = 1.0 / max_hz if max_hz > 0 else 0.0
        self._last_s: float | None = None

    def due(self, now_s: float) -> bool:
        if self._last_s is not None and now_s - self._last_s < self.min_interval_s:
            return False
        self._last_s = now_s
        return True


@dataclass
class RelayedTopic:
    """One ROS topic and the Foxglove channel it goes out on."""

    channel: foxglove.Channel
    throttle: ImageThrottle | None  # images only
    latched: bool                   # transient local: the last message goes to new subscribers
    last: bytes = b''               # latched topics: the last message received
    subscription: object = None


class _LatchedReplay(ServerListener):
    """The server's subscribe callback (an SDK thread): hands the channel to the node."""

    def __init__(self, node: FoxgloveNode) -> None:
        self.node = node

    def on_subscribe(self, client: Client, channel: ChannelView) -> None:
        self.node.replay_latched(channel.id)


class FoxgloveNode(Node):
    def __init__(self) -> None:
        super().__init__('foxglove')
        params = declare_parameters(self, PARAMETERS)
        if params['max_image_hz'] < 0:
            raise ConfigError(f'parameter max_image_hz={params["max_image_hz"]}: must be >= 0 '
                              '(0: every image)')
        if not 0 <= params['port'] <= 65535:
            raise ConfigError(f'parameter port={params["port"]}: must be 0..65535')
        self.params = params
        self.selection = TopicSelection(tuple(params['topics']), tuple(params['exclude']))
        self.definitions = MessageDefinitions(ament_share_dirs())
        self.relayed: dict[str, RelayedTopic] = {}      # by ROS topic
        self.by_channel: dict[int, RelayedTopic] = {}   # by Foxglove channel id
        self.skipped_types: set[str] = set()
        # A private context: the channels of this node reach this server only.
        self.foxglove_context = foxglove.Context()
        try:
            self.server = foxglove.start_server(
                name=f'noetra_ros {self.get_fully_qualified_name()}', host=params['host'],
                port=params['port'], context=self.foxglove_context,
                server_listener=_LatchedReplay(self))
        except RuntimeError as exc:  # the SDK's FoxgloveError: port taken, unknown host
            raise ConfigError(f'Foxglove WebSocket server on {params["host"]}:'
                              f'{params["port"]}: {exc}') from exc
        self.url = foxglove_url(params['host'], self.server.port)
        # A wall-clock timer: with use_sim_time, /clock only runs once the episodes do.
        self.create_timer(params['discovery_period_s'], self._discover,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f'Foxglove live view: open {self.url} in Foxglove (Open connection -> Foxglove '
            f'WebSocket); layout config/foxglove/noetra_cell.json (docs/VIEWING.md)')

    # ------------------------------------------------------------------ discovery
    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if (topic not in self.relayed and len(types) == 1
                    and self.selection.wants(topic)):
                self._relay(topic, types[0])

    def _relay(self, topic: str, type_name: str) -> None:
        publishers = self.get_publishers_info_by_topic(topic)
        if not publishers:
            return  # only subscribers so far: look again at the next discovery
        try:
            definition = self.definitions.get(type_name)
            msg_class = message_class(type_name)
        except InputError as exc:
            if type_name not in self.skipped_types:
                self.skipped_types.add(type_name)
                self.get_logger().warning(f'not relaying {topic}: {exc}')
            return
        choice = subscription_qos([OfferedQos(*offered_policies(p.qos_profile))
                                   for p in publishers])
        channel = foxglove.Channel(
            topic, message_encoding='cdr', context=self.foxglove_context,
            schema=foxglove.Schema(name=type_name, encoding='ros2msg',
                                   data=definition.text.encode()))
        relayed = RelayedTopic(
            channel=channel, latched=choice.transient_local,
            throttle=ImageThrottle(self.params['max_image_hz'])
            if type_name in IMAGE_TYPES else None)
        relayed.subscription = self.create_subscription(
            msg_class, topic, lambda data, relayed=relayed: self._on_message(relayed, data),
            recording_qos(choice.reliable, choice.transient_local, QUEUE_DEPTH), raw=True)
        self.relayed[topic] = self.by_channel[channel.id()] = relayed

    # ------------------------------------------------------------------ messages
    def _on_message(self, relayed: RelayedTopic, data: bytes) -> None:
        if relayed.latched:
            relayed.last = data
        if relayed.throttle is not None and not relayed.throttle.due(time.monotonic()):
            return
        relayed.channel.log(data, log_time=self._now_ns())

    def replay_latched(self, channel_id: int) -> None:
        """A client subscribed: a latched topic's last message goes out again (to every
        subscriber of the channel: a second copy of a latched message changes nothing)."""
        relayed = self.by_channel.get(channel_id)
        if relayed is not None and relayed.latched and relayed.last:
            relayed.channel.log(relayed.last, log_time=self._now_ns())

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def destroy_node(self) -> None:
        self.server.stop()
        super().destroy_node()


def main(args=None) -> None:
    run_node(FoxgloveNode, 'foxglove_node', args)


if __name__ == '__main__':
    main()

"""A small multimodal visuomotor policy: cameras + joint state + instruction -> action chunk.

Architecture (all ONNX opset-17 exportable with the TorchScript exporter):

* one CNN per camera: 4 conv layers (5x5 s2, 3x3 s2, 3x3 s1, 3x3 s1) with GroupNorm + ReLU,
  then a 1x1 conv to K keypoint maps and a *spatial softmax* that returns the expected (x, y)
  image position of each map (2K numbers) plus a global average of the last feature map.
  Spatial softmax keeps *where* things are, which is what a pick-and-place policy needs, at a
  fraction of the parameters of a flattening head;
* a state MLP on the normalised joint + gripper positions;
* an instruction encoder: a word embedding averaged over the non-pad tokens (an EmbeddingBag-like
  masked mean, exported as Gather / Mul / ReduceSum / Div);
* a fused MLP that outputs a chunk of T normalised actions [B, T, A];
* optionally (``aux_dim`` > 0) an auxiliary head used only in training: from the same fused
  features it regresses the episode's *key poses* (the joint targets at which the expert closes
  and opens the gripper). That tells the image encoders, from the first frame on, which object
  the instruction names and where it and the bin are - the visual precision pure action cloning
  learns slowly. The head is not part of the exported graph.

Action parameterisation: the contract asks for absolute joint targets normalised by the action
statistics. The network predicts the *change* from the current joint positions and adds the
current positions back inside the graph (``residual_joints``), so the exported output stays
absolute while the regression target of the network is small and centred. The gripper component
is predicted directly (it is a binary-like open/close level, not a continuation of the state).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from noetra_ros.core.errors import ConfigError

# Heading features of the named object: cos / sin of 2 yaw and of 4 yaw (see target_heading).
HEADING_DIM = 4


@dataclass(frozen=True)
class PolicyConfig:
    """Shapes and sizes of :class:`VisuomotorPolicy`."""

    cameras: tuple[str, ...]
    image_height: int
    image_width: int
    state_dim: int
    action_dim: int
    chunk_length: int
    vocab_size: int
    max_tokens: int
    conv_channels: int = 32
    keypoints: int = 32
    state_hidden: int = 64
    text_dim: int = 32
    hidden: int = 256
    residual_joints: int = 0  # first N action components are predicted relative to state[:N]
    aux_dim: int = 0  # size of the training-only key-pose head (0 = none)
    film: bool = False  # instruction-conditioned FiLM on the last conv features of each camera
    grounding: bool = False  # per camera, an instruction-conditioned map of the named object
    stem_channels: int = 0  # channels of the first conv layer (0 = conv_channels)
    # Regress the named object's 3-D position from the grounded pixels + arm state and give
    # it to the action head (needs grounding; trained against the recorded position).
    target_position: bool = False
    # Per grounded camera, the conv features averaged under the grounding map's attention: what
    # the named object looks like (its outline, so its orientation), not only where it is. The
    # global average and the keypoint positions lose a 20-pixel object's heading.
    glimpse: bool = False
    # Regress the named object's heading (cos / sin of 2 x yaw and 4 x yaw, the forms a block's
    # and a cube's symmetry leave unchanged) from the glimpses + arm state and give it to the
    # action head (needs glimpse; trained against the recorded target_yaw).
    target_heading: bool = False
    # How the instruction's token embeddings become one vector: 'mean' (a bag of words; the
    # shipped model) or 'attention' (`text_heads` learned queries, each a softmax over the
    # tokens, concatenated and projected). With many phrasings a mean is diluted by every
    # filler word a person adds ("could you please..."); attention can weigh the colour,
    # shape and side words and ignore the rest, whatever their number or order.
    text_pooling: str = 'mean'
    text_heads: int = 4

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ConfigError('cameras=(): at least one camera is required')
        for name in ('image_height', 'image_width'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 16:
                raise ConfigError(f'{name}={value!r}: must be an integer >= 16 (two stride-2 '
                                  'convs leave a quarter-size keypoint map)')
        if not isinstance(self.stem_channels, int) or self.stem_channels < 0:
            raise ConfigError(f'stem_channels={self.stem_channels!r}: must be an integer >= 0')
        for name in ('state_dim', 'action_dim', 'chunk_length', 'vocab_size', 'max_tokens',
                     'conv_channels', 'keypoints', 'state_hidden', 'text_dim', 'hidden'):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f'{name}={value!r}: must be a positive integer')
        if self.text_pooling not in ('mean', 'attention'):
            raise ConfigError(f'text_pooling={self.text_pooling!r}: allowed: mean, attention')
        if not isinstance(self.text_heads, int) or self.text_heads <= 0:
            raise ConfigError(f'text_heads={self.text_heads!r}: must be a positive integer')
        if self.target_position and not self.grounding:
            raise ConfigError('target_position=True needs grounding=True (it reads the '
                              'grounded pixels)')
        if self.glimpse and not self.grounding:
            raise ConfigError('glimpse=True needs grounding=True (it pools under the map)')
        if self.target_heading and not self.glimpse:
            raise ConfigError('target_heading=True needs glimpse=True (it reads the glimpses)')
        limit = min(self.state_dim, self.action_dim)
        if not isinstance(self.aux_dim, int) or self.aux_dim < 0:
            raise ConfigError(f'aux_dim={self.aux_dim!r}: must be an integer >= 0')
        if not 0 <= self.residual_joints <= limit:
            raise ConfigError(f'residual_joints={self.residual_joints}: must be in [0, '
                              f'min(state_dim, action_dim)={limit}]')

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, stored in checkpoints."""
        data = asdict(self)
        data['cameras'] = list(self.cameras)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'PolicyConfig':
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data['cameras'] = tuple(data['cameras'])
        return cls(**data)


class SpatialSoftmax(nn.Module):
    """Expected image coordinates (in [-1, 1]) of each channel's softmax over pixels."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys = torch.linspace(-1.0, 1.0, height)
        xs = torch.linspace(-1.0, 1.0, width)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
        # [H*W, 2] so that one MatMul gives both coordinates of every keypoint.
        self.register_buffer('grid', torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], 1),
                             persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        attention = torch.softmax(features.reshape(b, c, h * w), dim=-1)
        return torch.matmul(attention, self.grid).reshape(b, c * 2)


def _conv_block(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
        nn.GroupNorm(8, c_out),
        nn.ReLU(inplace=True),
    )


def _apply_film(features: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """FiLM: `params` [B, 2C] = per-channel (gamma, beta); features * (1 + gamma) + beta."""
    gamma, beta = params.unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
    return features * (1.0 + gamma) + beta


class CameraEncoder(nn.Module):
    """Small CNN + spatial softmax for one camera; optionally grounded on the instruction.

    forward(image, film, text) -> (features [B, out_dim], grounding logits [B, 1, h, w] or None).
    With ``grounding`` the instruction modulates the conv features (FiLM) and a two-layer 1x1
    conv head turns them into ONE map whose spatial softmax is the image position of the object
    the instruction names. Training supervises that map with the object's true pixel (see
    train.py), so the policy is told where to look instead of having to discover it from the
    action loss alone; the position (2 numbers) joins the features the action head sees.
    """

    def __init__(self, height: int, width: int, channels: int, keypoints: int,
                 text_dim: int = 0, grounding: bool = False, stem_channels: int = 0,
                 glimpse: bool = False) -> None:
        super().__init__()
        stem = stem_channels or channels
        self.body = nn.Sequential(
            _conv_block(3, stem, 5, 2),
            _conv_block(stem, channels, 3, 2),
            _conv_block(channels, 2 * channels, 3, 1),
            _conv_block(2 * channels, 2 * channels, 3, 1),
        )
        out_h, out_w = height, width
        for _ in range(2):
            out_h, out_w = (out_h + 1) // 2, (out_w + 1) // 2
        self.keypoint_maps = nn.Conv2d(2 * channels, keypoints, 1)
        self.spatial_softmax = SpatialSoftmax(out_h, out_w)
        self.grounding_film = nn.Linear(text_dim, 4 * channels) if grounding else None
        self.grounding_map = (nn.Sequential(nn.Conv2d(2 * channels, channels, 1),
                                            nn.ReLU(inplace=True), nn.Conv2d(channels, 1, 1))
                              if grounding else None)
        self.glimpse = glimpse and grounding
        self.glimpse_dim = 2 * channels if self.glimpse else 0
        self.out_dim = (2 * keypoints + 2 * channels + (2 if grounding else 0)
                        + self.glimpse_dim)

    def forward(self, image: torch.Tensor, film: torch.Tensor | None = None,
                text: torch.Tensor | None = None,
                queries: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor] | None]:
        """(features, grounding logits of `text`); with `queries` (training only: other
        instructions' embeddings) the second item is instead a list: the logits of `text`
        followed by one map per query, all from the same conv features."""
        features = self.body(image)
        if film is not None:
            # Scale / shift each channel from the instruction, so the keypoint maps can light
            # up on the object the instruction names rather than on every object.
            features = _apply_film(features, film)
        points = self.spatial_softmax(self.keypoint_maps(features))
        pooled = features.mean(dim=(2, 3))
        if self.grounding_film is None or self.grounding_map is None or text is None:
            return torch.cat([points, pooled], dim=1), None
        logits = self.ground(features, text)
        target = self.spatial_softmax(logits)
        parts = [points, pooled, target]
        if self.glimpse:
            # Features under the grounding attention [B, C]: one MatMul per batch.
            b, c, h, w = features.shape
            attention = torch.softmax(logits.reshape(b, h * w), dim=-1).unsqueeze(-1)
            parts.insert(2, torch.matmul(features.reshape(b, c, h * w), attention).squeeze(-1))
        if queries is not None:
            return (torch.cat(parts, dim=1),
                    [logits] + [self.ground(features, query) for query in queries])
        return torch.cat(parts, dim=1), logits

    def ground(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Grounding logits [B, 1, h, w] of the object an instruction embedding names."""
        assert self.grounding_film is not None and self.grounding_map is not None
        return self.grounding_map(torch.relu(_apply_film(features, self.grounding_film(text))))


class VisuomotorPolicy(nn.Module):
    """forward(*images, state, instruction) -> actions [B, T, A] (normalised).

    Inputs are already pre-processed by ``noetra_ros.core.policy.preprocess``: images float32
    [B, 3, H, W] normalised, state float32 [B, D] normalised, instruction int64 [B, L] with 0 as
    padding.
    """

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleList([
            CameraEncoder(config.image_height, config.image_width, config.conv_channels,
                          config.keypoints, config.text_dim, config.grounding,
                          config.stem_channels, config.glimpse) for _ in config.cameras])
        self.state_mlp = nn.Sequential(
            nn.Linear(config.state_dim, config.state_hidden), nn.ReLU(inplace=True),
            nn.Linear(config.state_hidden, config.state_hidden), nn.ReLU(inplace=True))
        self.word_embedding = nn.Embedding(config.vocab_size, config.text_dim)
        if config.text_pooling == 'attention':
            self.text_scores = nn.Linear(config.text_dim, config.text_heads)
            self.text_project = nn.Linear(config.text_heads * config.text_dim, config.text_dim)
        self.film = (nn.ModuleList([nn.Linear(config.text_dim, 4 * config.conv_channels)
                                    for _ in config.cameras]) if config.film else None)
        # The object's position from where each camera sees it (2 numbers per camera) and the
        # arm state (which places the wrist camera): a small, well-posed regression whose
        # output (3 numbers) is the feature the action head needs most for an accurate grasp.
        self.target_mlp = (nn.Sequential(
            nn.Linear(2 * len(config.cameras) + config.state_dim, 128), nn.ReLU(inplace=True),
            nn.Linear(128, 128), nn.ReLU(inplace=True), nn.Linear(128, 3))
            if config.target_position else None)
        glimpse_total = sum(e.glimpse_dim for e in self.encoders)
        self.heading_mlp = (nn.Sequential(
            nn.Linear(glimpse_total + config.state_dim, 128), nn.ReLU(inplace=True),
            nn.Linear(128, 128), nn.ReLU(inplace=True), nn.Linear(128, HEADING_DIM))
            if config.target_heading else None)
        fused = (sum(e.out_dim for e in self.encoders) + config.state_hidden + config.text_dim
                 + (3 if config.target_position else 0)
                 + (HEADING_DIM if config.target_heading else 0))
        self.fused_dim = fused  # what _features returns per sample (a flow head reads it)
        self.head = nn.Sequential(
            nn.Linear(fused, config.hidden), nn.ReLU(inplace=True),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(inplace=True),
            nn.Linear(config.hidden, config.chunk_length * config.action_dim))
        self.aux_head = (nn.Sequential(nn.Linear(fused, config.hidden), nn.ReLU(inplace=True),
                                       nn.Linear(config.hidden, config.aux_dim))
                         if config.aux_dim else None)
        # Maps normalised state -> normalised action for the residual joints:
        # a_norm = (s_norm * s_std + s_mean - a_mean) / a_std = s_norm * scale + shift.
        n = config.residual_joints
        self.register_buffer('residual_scale', torch.ones(n))
        self.register_buffer('residual_shift', torch.zeros(n))

    def set_normalisation(self, state_mean: torch.Tensor, state_std: torch.Tensor,
                          action_mean: torch.Tensor, action_std: torch.Tensor) -> None:
        """Fix the residual mapping from the dataset statistics (call before training)."""
        n = self.config.residual_joints
        if n == 0:
            return
        scale = state_std[:n] / action_std[:n]
        shift = (state_mean[:n] - action_mean[:n]) / action_std[:n]
        self.residual_scale.copy_(scale.to(self.residual_scale))
        self.residual_shift.copy_(shift.to(self.residual_shift))

    def encode_instruction(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, text_dim] from [B, L] token ids; id 0 is padding and contributes nothing
        (PolicyConfig.text_pooling: masked mean, or masked multi-query attention)."""
        mask = (tokens != 0).to(torch.float32).unsqueeze(-1)
        embedded = self.word_embedding(tokens)
        if self.config.text_pooling == 'mean':
            summed = (embedded * mask).sum(dim=1)
            return summed / mask.sum(dim=1).clamp(min=1.0)
        # Pads get a score far below any real token's (not -inf: an all-pad row stays finite).
        scores = self.text_scores(embedded) + (mask - 1.0) * 1e4     # [B, L, heads]
        weights = torch.softmax(scores, dim=1)
        pooled = torch.einsum('blh,bld->bhd', weights, embedded)    # [B, heads, text_dim]
        return self.text_project(pooled.reshape(pooled.shape[0], -1))

    def _features(self, inputs: tuple[torch.Tensor, ...],
                  queries: tuple[torch.Tensor, ...] = ()) -> tuple[torch.Tensor, dict]:
        """(fused features, training outputs: 'grounding' logits per camera, 'target_position'
        and, for `queries` (token tensors of other instructions), 'query_grounding': per query
        the logits per camera)."""
        n_cam = len(self.config.cameras)
        if len(inputs) != n_cam + 2:
            raise ValueError(f'expected {n_cam} images + state + instruction, got {len(inputs)}')
        images, state, tokens = inputs[:n_cam], inputs[n_cam], inputs[n_cam + 1]
        text = self.encode_instruction(tokens)
        films = ([film(text) for film in self.film] if self.film is not None
                 else [None] * n_cam)
        query_texts = [self.encode_instruction(q) for q in queries] if queries else None
        encoded = [enc(img, film, text, query_texts)
                   for enc, img, film in zip(self.encoders, images, films)]
        query_grounding = None
        if query_texts is not None:
            # Each grounded encoder returned [own logits, query 1, ...]; regroup by query.
            maps = [logits if logits is not None else [None] * (len(queries) + 1)
                    for _, logits in encoded]
            encoded = [(features, camera_maps[0]) for (features, _), camera_maps
                       in zip(encoded, maps)]
            query_grounding = [[camera_maps[1 + q] for camera_maps in maps]
                               for q in range(len(queries))]
        parts = [features for features, _ in encoded]
        parts.append(self.state_mlp(state))
        parts.append(text)
        extras: dict = {'grounding': [logits for _, logits in encoded], 'target_position': None,
                        'query_grounding': query_grounding}
        if self.target_mlp is not None:
            # A grounded encoder's last two features are the object's image position.
            pixels = [features[:, -2:] for features, _ in encoded]
            target = self.target_mlp(torch.cat(pixels + [state], dim=1))
            extras['target_position'] = target
            parts.append(target)
        extras['target_heading'] = None
        if self.heading_mlp is not None:
            # A glimpsing encoder's glimpse sits just before the last two (position) features.
            glimpses = [features[:, -2 - enc.glimpse_dim:-2]
                        for enc, (features, _) in zip(self.encoders, encoded)]
            heading = self.heading_mlp(torch.cat(glimpses + [state], dim=1))
            extras['target_heading'] = heading
            parts.append(heading)
        return torch.cat(parts, dim=1), extras

    def forward_with_aux(self, *inputs: torch.Tensor,
                         queries: tuple[torch.Tensor, ...] = ()) -> tuple[torch.Tensor, dict]:
        """(actions, training outputs) - the training entry point. The dict holds 'key_poses'
        (or None), 'grounding' (per camera: logits [B, 1, h, w] or None), 'target_position'
        (normalised, or None) and 'query_grounding' (per entry of `queries`, instruction
        tokens [B, L] naming other objects of the scene: logits per camera; None without
        queries)."""
        features, extras = self._features(inputs, queries)
        extras['key_poses'] = self.aux_head(features) if self.aux_head is not None else None
        return self._actions(features, inputs[len(self.config.cameras)]), extras

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        features, _ = self._features(inputs)
        return self._actions(features, inputs[len(self.config.cameras)])

    def _actions(self, features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        out = self.head(features)
        out = out.reshape(-1, cfg.chunk_length, cfg.action_dim)
        n = cfg.residual_joints
        if n:
            base = state[:, :n] * self.residual_scale + self.residual_shift
            out = torch.cat([out[:, :, :n] + base.unsqueeze(1), out[:, :, n:]], dim=2)
        return out


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

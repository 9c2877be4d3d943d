"""Direct unit tests of the supervisor state machine and its intervention log (no supervisor).

Every transition of docs/SAFETY.md's table is driven on a bare SafetyStateMachine: it starts
HOLDING, only an explicit arm request arms, an e-stop latches until reset, a reset never arms,
inhibits block arming, and every transition is logged with its reason.
"""
from __future__ import annotations

import pytest

from noetra_ros.core.safety.state_machine import (
    Decision, InterventionLog, SafetyEvent, SafetyState, SafetyStateMachine)

ARMED, HOLDING, FAULT, ESTOP = (SafetyState.ARMED, SafetyState.HOLDING, SafetyState.FAULT,
                                SafetyState.ESTOP)


def machine_in(state: SafetyState) -> tuple[SafetyStateMachine, InterventionLog]:
    """A fresh machine brought to `state` through its public requests."""
    log = InterventionLog()
    sm = SafetyStateMachine(log)
    if state is ARMED:
        assert sm.request_arm(1.0, [])
    elif state is FAULT:
        assert sm.request_arm(1.0, [])
        assert sm.fault(2.0, 'tracking error joint_2')
    elif state is ESTOP:
        sm.estop(2.0, 'operator button')
    assert sm.state is state
    return sm, log


# Every state x every event -> the state after it (docs/SAFETY.md "State machine").
EVENTS = {
    'hold': lambda sm: sm.hold(5.0, 'hold requested'),
    'fault': lambda sm: sm.fault(5.0, 'external fault'),
    'estop': lambda sm: sm.estop(5.0, 'estop topic'),
    'reset_estop': lambda sm: sm.reset_estop(5.0),
    'arm': lambda sm: sm.request_arm(5.0, []),
    'arm_blocked': lambda sm: sm.request_arm(5.0, ['joint_states not fresh']),
    'inhibit': lambda sm: sm.set_inhibit(5.0, 'qos', 'incompatible QoS'),
    'clear_unknown_inhibit': lambda sm: sm.clear_inhibit(5.0, 'nothing'),
}
TABLE = {
    HOLDING: dict(hold=HOLDING, fault=FAULT, estop=ESTOP, reset_estop=HOLDING, arm=ARMED,
                  arm_blocked=HOLDING, inhibit=HOLDING, clear_unknown_inhibit=HOLDING),
    ARMED: dict(hold=HOLDING, fault=FAULT, estop=ESTOP, reset_estop=ARMED, arm=ARMED,
                arm_blocked=ARMED, inhibit=HOLDING, clear_unknown_inhibit=ARMED),
    FAULT: dict(hold=FAULT, fault=FAULT, estop=ESTOP, reset_estop=FAULT, arm=ARMED,
                arm_blocked=FAULT, inhibit=FAULT, clear_unknown_inhibit=FAULT),
    ESTOP: dict(hold=ESTOP, fault=ESTOP, estop=ESTOP, reset_estop=HOLDING, arm=ESTOP,
                arm_blocked=ESTOP, inhibit=ESTOP, clear_unknown_inhibit=ESTOP),
}


@pytest.mark.parametrize('start, event', [(s, e) for s in TABLE for e in EVENTS],
                         ids=[f'{s.value}-{e}' for s in TABLE for e in EVENTS])
def test_every_state_and_event_leads_to_the_documented_state(start, event):
    sm, log = machine_in(start)
    before = sm.reason
    EVENTS[event](sm)
    expected = TABLE[start][event]
    assert sm.state is expected
    transitions = [e for e in log.events if e.kind == 'transition']
    if expected is start:
        # No transition: the state's reason (the stronger one, for FAULT / ESTOP) stays.
        assert sm.reason == before
        assert not any(e.time == 5.0 for e in transitions)
    else:
        assert transitions[-1].time == 5.0 and sm.since == 5.0
        assert transitions[-1].detail.startswith(f'{start.value} -> {expected.value}: ')


def test_starts_holding_and_not_armed():
    sm = SafetyStateMachine(InterventionLog())
    assert sm.state is HOLDING and sm.reason == 'not armed' and sm.since == 0.0
    assert sm.inhibits == {}


def test_only_an_arm_request_without_blockers_arms():
    sm, log = machine_in(HOLDING)
    refused = sm.request_arm(1.0, ['joint_states not fresh', 'still decelerating'])
    assert not refused and refused.reason == 'joint_states not fresh; still decelerating'
    assert sm.state is HOLDING and log.count('arm_refused') == 1
    accepted = sm.request_arm(2.0, [])
    assert accepted and accepted.reason == 'armed' and sm.reason == 'armed'
    again = sm.request_arm(3.0, [])
    assert again and again.reason == 'already armed' and sm.since == 2.0


def test_a_refused_arm_while_armed_does_not_disarm():
    sm, log = machine_in(ARMED)
    decision = sm.request_arm(4.0, ['sensor cam not fresh'])
    assert not decision and 'sensor cam not fresh' in decision.reason
    assert sm.state is ARMED and log.count('arm_refused') == 1


def test_arming_from_fault_acknowledges_the_fault():
    sm, _ = machine_in(FAULT)
    decision = sm.request_arm(3.0, [])
    assert decision and sm.state is ARMED
    assert decision.reason == 'armed (cleared tracking error joint_2)'


def test_latched_estop_needs_a_reset_and_then_an_explicit_arm():
    sm, log = machine_in(ARMED)
    sm.estop(3.0, 'operator button')
    assert sm.state is ESTOP and sm.reason == 'operator button'
    refused = sm.request_arm(4.0, [])
    assert not refused and refused.reason == 'estop latched (reset_estop first)'
    # Other blockers are not listed while latched: the latch is the one thing to resolve.
    sm.set_inhibit(4.5, 'qos', 'mismatch')
    assert sm.request_arm(4.6, ['x']).reason == 'estop latched (reset_estop first)'
    sm.clear_inhibit(4.7, 'qos')
    reset = sm.reset_estop(5.0)
    assert reset and reset.reason == 'estop reset; explicit arm required'
    assert sm.state is HOLDING  # never ARMED by a reset
    assert sm.request_arm(6.0, []) and sm.state is ARMED
    assert log.count('arm_refused') == 2


def test_a_second_estop_keeps_the_first_reason():
    sm, _ = machine_in(ESTOP)
    sm.estop(3.0, 'second button')
    assert sm.reason == 'operator button' and sm.since == 2.0


def test_reset_outside_estop_is_refused_and_names_the_state():
    for state in (HOLDING, ARMED, FAULT):
        sm, _ = machine_in(state)
        decision = sm.reset_estop(3.0)
        assert not decision and decision.reason == f'not in ESTOP (state {state.value})'
        assert sm.state is state


def test_hold_and_fault_do_not_hide_a_stronger_state():
    sm, _ = machine_in(FAULT)
    assert sm.hold(3.0, 'hold requested') is False
    assert sm.reason == 'tracking error joint_2'
    sm, _ = machine_in(ESTOP)
    assert sm.fault(3.0, 'fk failed') is False and sm.reason == 'operator button'
    sm, _ = machine_in(HOLDING)
    assert sm.fault(3.0, 'command rejected (names)') is True and sm.state is FAULT


def test_inhibits_hold_block_arming_and_never_arm_when_cleared():
    sm, log = machine_in(ARMED)
    sm.set_inhibit(3.0, 'qos', 'incompatible QoS on joint_states')
    assert sm.state is HOLDING and sm.reason == 'inhibit qos: incompatible QoS on joint_states'
    assert sm.inhibits == {'qos': 'incompatible QoS on joint_states'}
    sm.set_inhibit(3.5, 'zone', 'person in the cell')
    refused = sm.request_arm(4.0, ['still decelerating'])
    assert not refused
    assert refused.reason == ('inhibit qos: incompatible QoS on joint_states; inhibit zone: '
                              'person in the cell; still decelerating')
    assert sm.clear_inhibit(5.0, 'qos') is True
    assert sm.clear_inhibit(5.0, 'qos') is False
    assert sm.state is HOLDING and not sm.request_arm(5.5, [])
    assert sm.clear_inhibit(6.0, 'zone') is True
    assert sm.state is HOLDING  # clearing never arms by itself
    assert sm.request_arm(7.0, []) and sm.state is ARMED
    assert log.count('inhibit') == 2


def test_inhibits_returns_a_copy():
    sm, _ = machine_in(HOLDING)
    sm.set_inhibit(1.0, 'qos', 'x')
    sm.inhibits.clear()
    assert sm.inhibits == {'qos': 'x'}


def test_every_transition_is_logged_but_not_counted():
    sm, log = machine_in(HOLDING)
    sm.request_arm(1.0, [])
    sm.hold(2.0, 'operator pause')
    details = [e.detail for e in log.events if e.kind == 'transition']
    assert details == ['HOLDING -> ARMED: armed', 'ARMED -> HOLDING: operator pause']
    assert 'transition' not in log.counters


# ------------------------------------------------------------------------ intervention log
def test_log_counts_records_and_bumps():
    log = InterventionLog(capacity=3)
    log.record(1.0, 'rejected_nonfinite', 'NaN in command')
    log.record(2.0, 'profile_changed', 'collaborative', count=False)
    log.bump('limited_accel', 5)
    log.bump('limited_accel')
    assert log.counters == {'rejected_nonfinite': 1, 'limited_accel': 6}
    assert log.count('profile_changed') == 0 and log.count('limited_accel') == 6
    assert log.events == [SafetyEvent(1.0, 'rejected_nonfinite', 'NaN in command'),
                          SafetyEvent(2.0, 'profile_changed', 'collaborative')]


def test_log_keeps_the_latest_events_but_every_count():
    log = InterventionLog(capacity=3)
    for k in range(10):
        log.record(float(k), 'timeouts', f'#{k}')
    assert [e.detail for e in log.events] == ['#7', '#8', '#9']
    assert log.count('timeouts') == 10
    log.counters['timeouts'] = 0  # a copy: the log is not changed through it
    assert log.count('timeouts') == 10


def test_decision_is_truthy_only_when_accepted():
    assert Decision(True, 'ok') and not Decision(False, 'no')

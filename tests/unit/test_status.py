import itertools

from mediagate.domain.status import IN_FLIGHT, TERMINAL, MediaStatus, can_move, sources_of

S = MediaStatus


def test_the_happy_path_is_allowed_step_by_step() -> None:
    path = [S.PENDING_UPLOAD, S.UPLOADED, S.SCANNING, S.PROCESSING, S.COMPLETED]
    assert all(can_move(a, b) for a, b in itertools.pairwise(path))


def test_no_step_skips_the_scan() -> None:
    assert not can_move(S.PENDING_UPLOAD, S.COMPLETED)
    assert not can_move(S.UPLOADED, S.PROCESSING)
    assert not can_move(S.UPLOADED, S.COMPLETED)
    assert not can_move(S.SCANNING, S.COMPLETED)
    assert sources_of(S.COMPLETED) == {S.PROCESSING}
    assert sources_of(S.UPLOADED) == {S.PENDING_UPLOAD, S.SCAN_FAILED}


def test_terminal_states_move_only_to_deletion_or_an_operator_requeue() -> None:
    for terminal in TERMINAL:
        allowed = {target for target in S if can_move(terminal, target)}
        expected = {S.UPLOADED} if terminal is S.SCAN_FAILED else set()
        if terminal is not S.DELETED:
            expected.add(S.DELETED)
        assert allowed == expected, terminal


def test_nothing_a_worker_holds_can_be_deleted() -> None:
    assert sources_of(S.DELETED) == {S.PENDING_UPLOAD, S.COMPLETED, S.REJECTED, S.SCAN_FAILED}
    assert not sources_of(S.DELETED) & IN_FLIGHT


def test_a_dead_workers_job_restarts_from_the_scan() -> None:
    assert can_move(S.PROCESSING, S.SCANNING)
    assert can_move(S.SCANNING, S.SCANNING)


def test_rejection_is_possible_before_completion_only() -> None:
    assert sources_of(S.REJECTED) == {S.PENDING_UPLOAD, S.UPLOADED, S.SCANNING, S.PROCESSING}

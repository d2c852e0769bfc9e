"""Where a tuning study lives, shared by its workers: a database (SQLite file, PostgreSQL or
MySQL server, through Optuna's RDBStorage and SQLAlchemy) or a journal file on a file system
every worker sees (`journal:PATH`, Optuna's JournalStorage, for clusters without a database).

A trial whose worker died is marked failed so that the study goes on: RDBStorage does it with
Optuna's heartbeats; a journal has none, so each trial here writes its own (a user attribute,
every `heartbeat` seconds) and each worker fails the trials whose beat stopped."""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from cifarlab.errors import CifarlabError, first_line

JOURNAL = "journal:"
BEAT = "cifarlab_heartbeat"  # the journal trials' own heartbeat, a user attribute


def masked(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def open_storage(url: str, heartbeat: int) -> Any:
    """The study's storage, checked now (a wrong or unreachable URL is one line naming it,
    before any training)."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL):]))
        except OSError as e:
            raise CifarlabError(f"cannot open the study journal {url}: {e.strerror}") from None
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    # Workers started together race to create the tables of a new database; the losers of
    # that race find them created when they try again.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs,
                                                  heartbeat_interval=heartbeat,
                                                  grace_period=2 * heartbeat)
        except Exception as e:  # bad URL, missing database driver, unreachable server
            if attempt == 4 or "driver" in str(e).lower() or "module" in str(e).lower():
                first = first_line(e)
                hint = (" (PostgreSQL needs its driver: pip install 'cifarlab[postgres]')"
                        if "psycopg" in first or "DB access module" in first else "")
                raise CifarlabError(f"cannot open the study storage {masked(url)}: "
                                    f"{masked(first)}{hint}") from None
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


def is_journal(study: Any) -> bool:
    import optuna

    return isinstance(study._storage, optuna.storages.JournalStorage)


@contextlib.contextmanager
def journal_heartbeat(study: Any, trial: Any, heartbeat: int) -> Iterator[None]:
    """While a journal study's trial runs, record a beat every `heartbeat` seconds."""
    if not is_journal(study):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            trial.set_user_attr(BEAT, time.time())
            stop.wait(heartbeat)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_journal_trials(study: Any, heartbeat: int) -> list[int]:
    """Mark failed the running trials of a journal study whose beat is older than twice the
    interval (their worker died); the numbers of those failed."""
    import optuna
    from optuna.trial import TrialState

    if not is_journal(study):
        return []
    storage = study._storage
    failed = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.user_attrs.get(BEAT, t.datetime_start.timestamp() if t.datetime_start else 0)
        if time.time() - last > 2 * heartbeat:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
                failed.append(t.number)
    return failed

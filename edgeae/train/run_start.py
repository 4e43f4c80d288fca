"""The steps both trainers (:mod:`edgeae.train.cae`, :mod:`edgeae.train.vae`) take around their own training: the
run folder held and checked (:func:`held_run`, :meth:`RunStart.check_resume`, :meth:`RunStart.check_new_out`), the
memory estimate (:meth:`RunStart.check_fits`), the data read once and a resume checked against it
(:meth:`RunStart.read_data`), the precision, the state restored and the segment recorded (:meth:`RunStart.restore`,
:meth:`RunStart.begin`), and the epochs' clock: time left, time budget, signals, mid-epoch saves, the history's rows
and how the invocation ended (:class:`RunLoop`).

A trainer passes its own logger: the lines keep their logger's name (``debug edgeae.train.cae: ...``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeae.train.resume import TrainState
    from edgeae.train.resume_files import DataFiles


def held_run(out: Path, kind: str, epochs: int, resume: bool) -> AbstractContextManager[None]:
    """The run folder ``out`` held for a ``kind`` run (:func:`~edgeae.train.run_folder.held_run_folder`); a resume of
    a folder that does not exist is refused by the resume check (to ``epochs``), which says why."""
    from edgeae.train.resume import check_resume
    from edgeae.train.run_folder import held_run_folder

    return held_run_folder(out, resume, lambda: check_resume(out, kind, epochs))


class RunStart:
    """One invocation of a ``kind`` trainer up to its first batch. ``config``: the trainer's config (``out``,
    ``epochs``, ``crops``, ``crops_per_epoch``, ``val_crops``, ``batch_size``, ``threads``, ``bf16``,
    ``use_bf16``, ``time_budget``, ``zoo_name``, ``zoo_force``, ``to_dict``); ``resume``: continue the run in
    ``config.out``; ``log``: the trainer's logger."""

    def __init__(self, config: Any, kind: str, resume: bool, log: logging.Logger) -> None:
        self.config, self.kind, self.resume, self.log = config, kind, resume, log
        self.out = Path(config.out)
        self.cfg_dict: dict[str, Any] = config.to_dict()
        self.data: DataFiles | None = None
        self.was_complete = False  # a resumed run that was complete (it resumes only to more epochs)
        # last.pt as check_resume read it (the folder is held), for read_data's check and restore: read once
        self._read: dict[str, Any] | None = None

    def check_resume(self) -> None:
        """A resume, before any work, so that nothing is written when it refuses: the run must be one of this
        trainer's that can go on to ``config.epochs`` (:func:`~edgeae.train.resume.check_resume`; a folder that mixes
        two runs is named as such). Nothing for a new run."""
        from edgeae.train.resume import read_resumable
        from edgeae.train.run_folder import named_mixture

        if self.resume:
            with named_mixture(self.out):
                self._read = read_resumable(self.out, self.kind, self.config.epochs)[1]

    def check_new_out(self) -> None:
        """A new run must not replace an earlier run's model in its folder (``refuse_trained_out``). Nothing for a
        resume."""
        from edgeae.train.run_folder import refuse_trained_out

        if not self.resume:
            refuse_trained_out(self.out, self.kind)

    def check_fits(
        self,
        device: Any,
        build: Callable[[], Any],
        crop: tuple[int, int],
        shapes: Sequence[tuple[int, int, int]],
        val_copies: int = 1,
        model_flags: str = "--widths",
    ) -> None:
        """Refuse a run that would not fit in memory, before the images are read and ``config.json`` is written
        (:mod:`edgeae.train.run_memory`): an epoch's and the validation crops of ``crop`` = (channels, side) pixels
        (``val_copies`` float32 arrays a validation crop), the images of ``shapes`` (their headers), and on a CPU the
        model ``build()`` (on CUDA against the device's free memory). ``model_flags``: what makes the model smaller."""
        from edgeae.train.run_memory import check_device_memory, check_run_memory, image_bytes, model_bytes

        c = self.config
        channels, side = crop
        crop_bytes = channels * side * side * 4
        model_need = model_bytes(build, (channels, side, side), c.batch_size)
        check_run_memory(
            {"crops": (c.crops_per_epoch, crop_bytes), "val_crops": (c.val_crops, val_copies * crop_bytes)},
            batch=(c.crops, c.batch_size),
            images=image_bytes(shapes, channels),
            model=model_need if device.type == "cpu" else None,
            model_flags=model_flags,
        )
        check_device_memory(device, model_need)

    def read_data(self, files: Sequence[Path]) -> DataFiles:
        """The torch threads set (``config.threads``), every file read once (:class:`DataFiles`: each ``last.pt``
        records them from here) and, on resume, the run's data and config checked against them right away, before
        any image is decoded (:func:`~edgeae.train.resume.check_state`); then how ``crops`` become whole batches."""
        from edgeae._optional import require
        from edgeae.train.common import crops_rounding
        from edgeae.train.resume import check_state
        from edgeae.train.resume_files import DataFiles

        if self.config.threads:
            require("torch").set_num_threads(self.config.threads)
        self.data = DataFiles.read(files)
        if self.resume:  # other data or config: refused now
            self._read = check_state(self.out, self.cfg_dict, self.data.hash, files=self.data, blob=self._read)
        rounding = crops_rounding(self.config.crops, self.config.batch_size)
        if rounding:
            self.log.info("%s", rounding)
        return self.data

    def write_config(self) -> None:
        """``config.json``: a new run's once its checks passed (a refused run leaves none), a resumed run's once its
        state is restored (``--epochs``, ``--time-budget`` etc. apply)."""
        from edgeae.train.common import write_json

        write_json(self.out / "config.json", {"kind": self.kind, **self.cfg_dict})

    def precision(self, device: Any) -> bool:
        """Whether the run trains under bfloat16 autocast on ``device``, said in the log."""
        c = self.config
        use_bf16 = bool(c.use_bf16(device.type))
        self.log.info(
            "precision: %s%s",
            "bfloat16 autocast" if use_bf16 else "float32",
            "" if c.bf16 is not None else " (chosen for this CPU: --bf16 / --no-bf16 to force)",
        )
        return use_bf16

    def restore(self, model: Any, optimizer: Any, scheduler: Any, n_batches: int) -> TrainState:
        """A new run's fresh state; a resumed run's ``last.pt`` restored into ``model``, ``optimizer`` and
        ``scheduler`` (read once, by :meth:`check_resume`), its ``config.json`` written back and where it goes on
        said."""
        from edgeae.train.resume import TrainState, load_state

        if not self.resume:
            return TrainState()
        assert self.data is not None, "read_data first"
        state = load_state(
            self.out, model, optimizer, scheduler, self.cfg_dict, self.data.hash, files=self.data, blob=self._read
        )
        self._read = None  # restored into the model: its copy of the weights is not held for the run
        self.was_complete, state.complete = state.complete, False  # a complete run resumes only to more epochs
        self._check_best_weights(state)
        self.write_config()
        if state.early_stop:  # stopped early, then killed before its final files: write them, train no more
            self.log.info("resumed %s: it stopped early after epoch %d; writing its final files", self.out,
                          state.epochs_done)  # fmt: skip
        elif state.epochs_done >= self.config.epochs:  # every epoch done, killed before its final files (it said
            # "at epoch 4/3, batch 0/4")
            self.log.info("resumed %s: all %d/%d epochs are done; writing its final files", self.out,
                          state.epochs_done, self.config.epochs)  # fmt: skip
        else:
            self.log.info("resumed %s at epoch %d/%d, batch %d/%d", self.out, state.epoch, self.config.epochs,
                          state.batch, n_batches)  # fmt: skip
        return state

    def _check_best_weights(self, state: TrainState) -> None:
        """A resume whose best epoch's weights file (the CAE's ``best.pt``, the VAE's ``best_state.pt``) is damaged
        (a record failing its CRC-32) or incomplete (cut short, or not a checkpoint at all: until session 46 found
        only after every remaining epoch had trained) is refused before it trains, unless it starts at that epoch's
        end, where the trainer rewrites the file from the restored model: the run would otherwise end on it."""
        from edgeae.checkpoint import damage_line, incomplete_line
        from edgeae.train.resume import ResumeError

        path = self.out / ("best.pt" if self.kind == "cae" else "best_state.pt")
        if self.at_best_epoch_end(state) or not path.is_file():
            return
        damaged = damage_line(path) or incomplete_line(path)
        if damaged is not None:
            raise ResumeError(f"cannot resume {self.out}: {damaged}")

    def begin(self, state: TrainState, device: Any, bf16: bool, command: str | None) -> None:
        """Record the crops each epoch trains and this invocation's segment (:mod:`edgeae.train.run_record`)."""
        from edgeae._optional import require
        from edgeae.train.run_record import start_segment

        state.crops_per_epoch = self.config.crops_per_epoch
        start_segment(state, device, bf16, require("torch").get_num_threads(), command)

    def at_best_epoch_end(self, state: TrainState) -> bool:
        """Whether this resume starts at the end of the run's best epoch: ``last.pt`` was written first there, so a
        kill may have left the best model unwritten (the trainer rewrites it, only when it is missing)."""
        return self.resume and not self.was_complete and state.batch == 0 and 0 < state.best_epoch == state.epochs_done

    def loop(self, model: Any, optimizer: Any, scheduler: Any, state: TrainState) -> RunLoop:
        """The epochs' clock of this invocation: the time budget starts now."""
        from edgeae.train.resume import save_state

        data = self.data

        def save() -> Path:
            assert data is not None, "read_data first"
            return save_state(self.out, model, optimizer, scheduler, state, self.cfg_dict, data.hash, kind=self.kind,
                              files=data)  # fmt: skip

        return RunLoop(self, state, save)


class RunLoop:
    """The epochs of one invocation: its :class:`~edgeae.train.run_clock.Deadline` (time budget, SIGINT/SIGTERM),
    mid-epoch saves (:class:`~edgeae.train.run_clock.Autosave`), the time left and how it ended (``stopped``: the
    stop in words, ``cause``: ``budget``, ``SIGINT`` or ``SIGTERM``; None while it was not stopped)."""

    def __init__(self, start: RunStart, state: TrainState, save: Callable[[], Path]) -> None:
        from edgeae.train.resume import Autosave, Deadline

        self.start, self.state, self.save = start, state, save
        self.epochs: int = start.config.epochs
        self.deadline = Deadline(start.config.time_budget)
        self.autosave = Autosave(state, save)
        self.stopped: str | None = None
        self.cause: str | None = None
        self._walls: list[float] = []  # wall seconds of each whole epoch of this invocation, validation included
        self._t_epoch, self._whole = 0.0, False

    def epochs_left(self) -> Iterator[int]:
        """The epochs to train, while the run is not stopped (nor stopped early)."""
        while self.state.epoch <= self.epochs and self.stopped is None and not self.state.early_stop:
            yield self.state.epoch

    def begin_epoch(self) -> str:
        """Start timing the epoch ``state.epoch``; its bar's label, with the run's time left (``epoch 3/20, run
        about 1h10m left``, and when the time budget stops it first, ``; the time budget stops it in 20m00s``)."""
        from edgeae.train.run_record import time_left

        self.autosave.start_epoch()
        self._t_epoch, self._whole = time.perf_counter(), self.state.batch == 0
        left = time_left(self.epochs - self.state.epoch + 1, self._timed(), self.deadline.left)
        left = left.replace("  about", ", run about")
        return f"epoch {self.state.epoch}/{self.epochs}{left}"

    def batch_done(self, loss: float, n: int, epoch: int, batch: int) -> bool:
        """Account one finished batch (mean ``loss`` over ``n`` samples); True when the run must stop now."""
        from edgeae.train.resume import account_batch

        account_batch(self.state, loss, n, epoch, batch)
        if self.deadline.expired:
            self.stopped, self.cause = self.deadline.reason, self.deadline.cause
            return True
        self.autosave.batch_done()
        return False

    def stopped_in_epoch(self, n_batches: int) -> bool:
        """After the epoch's batches: bank their time; True when a stop came before its last batch."""
        self.autosave.bank_time()
        return self.stopped is not None and self.state.batch < n_batches

    def epoch_row(self, val: float, advice: str, extra: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
        """The epoch's line of the history (``loss.csv``), appended to it: its mean training loss, the validation
        loss ``val``, then ``extra()``'s columns and the training seconds. A ``val`` that is not finite stops the run
        with :class:`~edgeae.train.resume.TrainingDiverged` (``advice``: what to lower)."""
        from edgeae.train.resume import TrainingDiverged

        s = self.state
        if not math.isfinite(val):
            raise TrainingDiverged(
                f"training diverged: the validation loss became {val} after epoch {s.epoch}; {advice}"
            )
        row = {
            "epoch": s.epoch,
            "train_loss": s.loss_sum / max(s.loss_count, 1),
            "val_loss": val,
            **(extra() if extra is not None else {}),
            "seconds": round(s.seconds, 1),
        }
        s.history.append(row)
        return row

    def time_left(self) -> str:
        """After the epoch's validation (before :meth:`end_epoch`): ``"  about 1h05m left"`` for the epochs after
        this one, from this invocation's whole epochs (or, before it has one, the seconds the history records), and
        when the time budget stops the run first, when (:func:`~edgeae.train.run_record.time_left`)."""
        from edgeae.train.run_record import time_left

        if self._whole:
            self._walls.append(time.perf_counter() - self._t_epoch)
        return time_left(self.epochs - self.state.epoch, self._timed(), self.deadline.left)

    def end_epoch(self) -> None:
        """The epoch is done: the state moves to the next one and ``last.pt`` is written (before the best model: a
        first ``last.pt`` that fails leaves no best model behind)."""
        s = self.state
        s.epoch, s.batch, s.loss_sum, s.loss_count, s.seconds = s.epoch + 1, 0, 0.0, 0, 0.0
        self.autosave.save_now()

    def check_deadline(self) -> None:
        """At an epoch end: stop before the next epoch when the budget ran out or a signal came."""
        if self.stopped is None and self.deadline.expired and self.state.epoch <= self.epochs:
            self.stopped, self.cause = self.deadline.reason, self.deadline.cause

    def close(self) -> None:
        """The signal handlers of the deadline removed (in a ``finally``)."""
        self.deadline.close()

    def finish(self) -> tuple[str | None, str | None]:
        """Record how the segment ended (every epoch done, or stopped early, is not a stop), write ``last.pt``;
        return (``stopped``, ``cause``)."""
        from edgeae.train.resume import resume_command
        from edgeae.train.run_record import end_segment

        s = self.state
        if self.stopped is None or s.epoch > self.epochs or s.early_stop:
            self.stopped = self.cause = None
        end_segment(s, self.stopped, self.cause)
        self.save()
        if self.stopped is not None:  # debug: the command prints the line, with how to continue
            c, start = self.start.config, self.start
            start.log.debug("%s: state saved to %s; continue with: %s", self.stopped, start.out / "last.pt",
                            resume_command(start.kind, start.out, c.zoo_name, c.zoo_force))  # fmt: skip
        return self.stopped, self.cause

    def metrics(self, parameters: int, device: Any, bf16: bool, channels: int) -> dict[str, Any]:
        """What both trainers' ``metrics.json`` says of the run: its best epoch and loss, epochs, the model's
        ``parameters``, training seconds, ``device`` and precision of this invocation, crops an epoch, every segment,
        the command that started the run and those that resumed it, and the settings that shape what it learned
        (``hyper_parameters``, with the ``channels`` it trained on and the epochs it trained in all: every export
        records these in its artifacts)."""
        from edgeae.train.run_record import first_command, hyper_parameters, resume_commands

        s = self.state
        return {
            "best_epoch": s.best_epoch,
            "val_loss": s.best_val,
            "epochs_run": len(s.history),
            "parameters": parameters,
            "train_seconds": round(sum(h["seconds"] for h in s.history), 1),
            "device": str(device),
            "bf16": bf16,
            "crops_per_epoch": self.start.config.crops_per_epoch,
            "segments": s.segments,
            **({"command": cmd} if (cmd := first_command(s.segments)) else {}),
            **({"resume_commands": more} if (more := resume_commands(s.segments)) else {}),
            "hyper_parameters": hyper_parameters(self.start.cfg_dict, channels, s.epochs_done),
        }

    def _timed(self) -> list[float]:
        return self._walls or [h["seconds"] for h in self.state.history]

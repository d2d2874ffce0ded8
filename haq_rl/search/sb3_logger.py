"""SB3's logger of a search run: CSV (appended to on ``--resume``) and TensorBoard when installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haq_rl.fileio import atomic_write, check_real_folder, open_regular


def sb3_logger(folder: Path) -> Any:
    """SB3's logger of the run: a resumed run appends to sb3_logs/progress.csv (SB3's own
    CSV writer starts it afresh), after cutting a torn last line a kill left."""
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, configure

    class AppendingCSV(CSVOutputFormat):
        def __init__(self, filename: str) -> None:
            path = Path(filename)
            # Never through a link, never a FIFO: a copied run directory may hold either.
            with open_regular(path, "ab+") as stream:
                stream.seek(0)
                data = stream.read()
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]
                whole = data  # the lines before the torn one
                atomic_write(path, lambda stream: stream.write(whole))
            # SB3 rewrites the header in place when keys are added: "r+", not append-only.
            self.file = open_regular(path, "r+", encoding="utf-8", errors="replace")
            self.file.seek(0, 2)
            self.keys = data.decode(errors="replace").split("\n", 1)[0].split(",") if data else []
            self.separator = ","
            self.quotechar = '"'

    check_real_folder(folder)  # a linked sb3_logs/ would put the logs outside the run
    folder.mkdir(parents=True, exist_ok=True)
    others = [name for name in _logger_formats() if name != "csv"]
    base = configure(str(folder), others) if others else Logger(str(folder), [])
    return Logger(str(folder), [*base.output_formats, AppendingCSV(str(folder / "progress.csv"))])


def _logger_formats() -> list[str]:
    """SB3 logs as CSV always, and as TensorBoard events when tensorboard is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ["csv"]
    return ["csv", "tensorboard"]

"""Models that ship with pivotgym, and loading any local Hugging Face checkpoint.

``load("pivotgym-tiny")`` gives the small causal LM bundled in the package (the default
π0 of the terminal suite); any other name is a path to a local checkpoint folder.
Loading never touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pivotgym.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CHECKPOINTS = Path(__file__).parent / "checkpoints"
BUNDLED = ("pivotgym-tiny",)


def resolve(name_or_path: str | Path) -> Path:
    """The checkpoint folder of a bundled model name or a local path."""
    if str(name_or_path) in BUNDLED:
        path = CHECKPOINTS / str(name_or_path)
    else:
        path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise DataError(f"no model checkpoint at {path} (config.json missing)", file=path)
    return path


def load(
    name_or_path: str | Path, device: str | Any = "cpu", dtype: Any = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` of a bundled model or a local checkpoint, in eval mode.

    ``dtype`` is a ``torch.dtype`` (default: as stored). Raises :class:`DataError`
    naming the path when there is no checkpoint there.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, dtype=dtype if dtype is not None else "auto"
    )
    model.to(device)
    model.eval()
    return model, tokenizer

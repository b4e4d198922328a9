"""``labbook hooks``: shell hooks that warn before repeating a mistake.

Installing them is plain file editing (one marked block in the rc file).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import click

from labbook.errors import LabbookError
from labbook.paths import config_home, data_dir

BLOCK_BEGIN = "# >>> labbook hooks >>>"
BLOCK_END = "# <<< labbook hooks <<<"
_BLOCK = re.compile(re.escape(BLOCK_BEGIN) + r".*?" + re.escape(BLOCK_END) + r"\n?", re.DOTALL)
SYSTEMD_UNIT = "labbook-watch.service"


def _hooks_source() -> Path:
    """The ``hooks/`` folder shipped with labbook."""
    import importlib.util

    here = Path(__file__).resolve().parent
    spec = importlib.util.find_spec("labbook_hooks")  # installed from the repo's hooks/
    shipped = [Path(spec.origin).parent] if spec and spec.origin else []
    for cand in (*shipped, here.parent / "hooks"):
        if (cand / "labbook.bash").is_file():
            return cand
    raise LabbookError(
        "the shell hook files are not part of this installation",
        hint="install labbook from its source tree (pip install -e .)",
    )


def _rc_file(shell: str) -> Path:
    if shell == "zsh":
        return Path(os.environ.get("ZDOTDIR") or Path.home()) / ".zshrc"
    return Path.home() / ".bashrc"


def _default_shell() -> str:
    name = os.path.basename(os.environ.get("SHELL", ""))
    return name if name in ("bash", "zsh") else "bash"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def install_hooks(shell: str, *, systemd: bool = False) -> list[str]:
    """Install (or refresh) the shell hook; return what was done, one line each.

    The hook script is copied to ``$XDG_DATA_HOME/labbook/hooks/`` and the rc file
    gets one marked block that sources it; an existing block is replaced in place.
    """
    src = _hooks_source()
    done: list[str] = []
    dest_dir = data_dir() / "hooks"
    dest_dir.mkdir(parents=True, exist_ok=True)
    script = dest_dir / f"labbook.{shell}"
    shutil.copyfile(src / f"labbook.{shell}", script)
    done.append(f"wrote {script}")
    # Split on spaces by the hook (it may be "python -m labbook"): no quoting inside.
    # `python -m labbook check --hook` is the hooks' fast path (no click, no CLI: ~half the
    # start-up), whatever module the check lives in.
    labbook_cmd = f"{sys.executable} -m labbook"
    block = (
        f"{BLOCK_BEGIN}\n"
        "# Added by `labbook hooks install`; `labbook hooks uninstall` removes this block.\n"
        f': "${{LABBOOK_HOOK_CMD:={labbook_cmd}}}"\n'
        f"[ -f {_quote(str(script))} ] && . {_quote(str(script))}\n"
        f"{BLOCK_END}\n"
    )
    rc = _rc_file(shell)
    old = rc.read_text(encoding="utf-8") if rc.exists() else ""
    if _BLOCK.search(old):
        new = _BLOCK.sub(lambda _: block, old, count=1)
    else:
        new = old + ("" if not old or old.endswith("\n") else "\n") + block
    if new != old:
        rc.parent.mkdir(parents=True, exist_ok=True)
        rc.write_text(new, encoding="utf-8")
        done.append(f"updated {rc}")
    else:
        done.append(f"{rc} already has the labbook block")
    if systemd:
        unit_dir = config_home() / "systemd" / "user"
        unit_dir.mkdir(parents=True, exist_ok=True)
        text = (src / SYSTEMD_UNIT).read_text(encoding="utf-8")
        text = text.replace("@LABBOOK@", f"{sys.executable} -m labbook")
        (unit_dir / SYSTEMD_UNIT).write_text(text, encoding="utf-8")
        done.append(f"wrote {unit_dir / SYSTEMD_UNIT}")
        done.append(f"start it with: systemctl --user enable --now {SYSTEMD_UNIT}")
    return done


def uninstall_hooks(shell: str, *, systemd: bool = False) -> list[str]:
    """Remove the marked block from the rc file and the copied hook script."""
    done: list[str] = []
    rc = _rc_file(shell)
    if rc.exists():
        old = rc.read_text(encoding="utf-8")
        new = _BLOCK.sub("", old)
        if new != old:
            rc.write_text(new, encoding="utf-8")
            done.append(f"removed the labbook block from {rc}")
    script = data_dir() / "hooks" / f"labbook.{shell}"
    if script.exists():
        script.unlink()
        done.append(f"removed {script}")
    if systemd:
        unit = config_home() / "systemd" / "user" / SYSTEMD_UNIT
        if unit.exists():
            unit.unlink()
            done.append(
                f"removed {unit} (stop it with: systemctl --user disable --now {SYSTEMD_UNIT})"
            )
    if not done:
        done.append("nothing to remove")
    return done


@click.group("hooks")
def hooks_cmd() -> None:
    """Shell integration: warn before a training command repeats a past mistake."""


_shell_option = click.option(
    "--shell",
    type=click.Choice(["bash", "zsh"]),
    help="The shell (default: from $SHELL, else bash).",
)


@hooks_cmd.command("install")
@_shell_option
@click.option(
    "--systemd", is_flag=True, help="Also install a systemd user unit for `labbook watch`."
)
def hooks_install_cmd(shell: str | None, systemd: bool) -> None:
    """Add the preexec hook to your shell's rc file (idempotent).

    Before a command that looks like training (python …train….py, torchrun,
    accelerate launch, deepspeed, python -m …train…, sbatch; set
    LABBOOK_HOOK_PATTERN to change) the hook runs `labbook check` for at most
    LABBOOK_HOOK_TIMEOUT seconds (0.3) and prints its warnings.
    """
    for line in install_hooks(shell or _default_shell(), systemd=systemd):
        click.echo(line)


@hooks_cmd.command("uninstall")
@_shell_option
@click.option("--systemd", is_flag=True, help="Also remove the systemd user unit.")
def hooks_uninstall_cmd(shell: str | None, systemd: bool) -> None:
    """Remove the labbook block from your shell's rc file."""
    for line in uninstall_hooks(shell or _default_shell(), systemd=systemd):
        click.echo(line)

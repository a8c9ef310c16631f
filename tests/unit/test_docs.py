"""The README and docs/ say only what works: every command in a shell block is checked against
the parser of the program it runs, every link between them resolves, and the front page stays
a front page.

Commands that cannot run here are checked, not run: `pulumi` (CI has no Pulumi CLI) against
the subcommands and flags of CLI v3.259.0 listed below, `astats` against its own argparse
parser, `docker` against its `--help`, the scripts against their usage. A command whose
program this test does not know fails it: add a check, do not skip it.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from astats_console.cli import build_parser
from tests.support.ci import unavailable

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
FRONT_PAGE_LINES = 100

# Flags every pulumi command takes (v3.259.0); a trailing "=" marks one that takes a value.
PULUMI_GLOBAL = (
    "--color= --cwd= -C= --disable-integrity-checking --emoji -e --fully-qualify-stack-names -Q "
    "--logflow --logtostderr --memprofilerate= --non-interactive --otel-traces= --profiling= "
    "--tracing= --verbose= -v= --help -h"
)
# Each pulumi command the docs use: its own flags, and how many arguments it takes.
PULUMI_COMMANDS: dict[tuple[str, ...], tuple[str, int, int]] = {
    ("up",): (
        "--attach-debugger= --config= -c= --config-file= --config-path --continue-on-error "
        "--debug -d --diff --exclude= --exclude-dependents --expect-no-changes --ignore-protect "
        "--json -j --message= -m= --neo --override-env= --parallel= -p= --policy-pack= "
        "--policy-pack-config= --refresh= -r= --replace= --run-program --secrets-provider= "
        "--show-config --show-full-output --show-policy-remediations --show-reads "
        "--show-replacement-steps --show-sames --show-secrets --skip-config-validation "
        "--skip-plugin-pre-install --skip-preview -f --stack= -s= --strict --suppress-outputs "
        "--suppress-permalink= --suppress-progress --target= -t= --target-dependents "
        "--target-replace= --urns --yes -y",
        0,
        1,
    ),
    ("preview",): (
        "--attach-debugger= --config= -c= --config-file= --config-path --debug -d --diff "
        "--exclude= -x= --exclude-dependents --expect-no-changes --ignore-protect --import-file= "
        "--json -j --message= -m= --neo --override-env= --parallel= -p= --policy-pack= "
        "--policy-pack-config= --refresh= -r= --replace= --run-program --save-plan= "
        "--show-config --show-full-output --show-policy-remediations --show-reads "
        "--show-replacement-steps --show-sames --show-secrets --skip-config-validation "
        "--skip-plugin-pre-install --stack= -s= --suppress-outputs --suppress-permalink= "
        "--suppress-progress --target= -t= --target-dependents --target-replace= --urns",
        0,
        1,
    ),
    ("destroy",): (
        "--config= -c= --config-file= --config-path --continue-on-error --debug -d --diff "
        "--exclude= -x= --exclude-protected --ignore-protect --json -j --message= -m= --neo "
        "--override-env= --parallel= -p= --preview-only --refresh= -r= --remove --run-program "
        "--show-config --show-full-output --show-replacement-steps --show-sames "
        "--skip-config-validation --skip-plugin-pre-install --skip-preview -f --stack= -s= "
        "--suppress-outputs --suppress-permalink= --suppress-progress --target= -t= "
        "--target-dependents --urns --yes -y",
        0,
        0,
    ),
    ("config",): ("--config-file= --json -j --open --show-secrets --stack= -s=", 0, 0),
    ("config", "get"): ("--json -j --open --path --config-file= --stack= -s=", 1, 1),
    ("config", "set"): (
        "--path --plaintext --raw --secret --type= --config-file= --stack= -s=",
        1,
        2,
    ),
    ("config", "rm"): ("--path --config-file= --stack= -s=", 1, 1),
    ("stack",): (
        "--output= --show-ids -i --show-name --show-secrets --show-urns -u --stack= -s=",
        0,
        0,
    ),
    ("stack", "init"): (
        "--copy-config-from= --no-select --secrets-provider= --stack= -s= --teams= --yes -y",
        0,
        1,
    ),
    ("stack", "select"): ("--create -c --secrets-provider= --stack= -s=", 0, 1),
    ("stack", "output"): ("--json -j --shell --show-secrets --stack= -s=", 0, 1),
    ("stack", "rm"): ("--force -f --preserve-config --remove-backups --stack= -s= --yes -y", 0, 1),
    ("stack", "change-secrets-provider"): ("--stack= -s=", 1, 1),
    ("plugin", "install"): (
        "--checksum= --exact --file= -f= --parallel= --reinstall --server=",
        0,
        3,
    ),
    ("login",): (
        "--cloud-url= -c= --default-org= --insecure --interactive --local -l --oidc-expiration= "
        "--oidc-org= --oidc-team= --oidc-token= --oidc-user=",
        0,
        1,
    ),
    ("state", "unprotect"): ("--all --stack= -s= --yes -y", 0, 1),
}
# What Debian packages the README may install beyond those .ci/run installs.
README_ONLY_PACKAGES = {"python3", "python3-venv", "git"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    """Every fenced block of a Markdown file, indented ones (in list items) included."""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[index])
        if not opening:
            index += 1
            continue
        indent, language = opening.groups()
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][len(indent) :])
            index += 1
        yield Block(path, index - len(body), language, "\n".join(body))
        index += 1


def shell_blocks() -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc) if b.language in SHELL_LANGUAGES]


def commands(block: Block) -> Iterator[list[str]]:
    """Each simple command of the block: lines joined, comments, redirections, pipes and
    `&&`/`||`/`;` taken apart, leading VAR=value assignments dropped."""
    text = block.text.replace("\\\n", " ")
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        current: list[str] = []
        skip_next = False
        for token in [*tokens, ";"]:
            if skip_next:
                skip_next = False
            elif token in {"&&", "||", "|", ";", "&"}:
                while current and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", current[0]):
                    current.pop(0)
                if current:
                    yield current
                current = []
            elif token in {">", ">>", "<", "2>", ">&", "2>&"}:
                skip_next = True
            else:
                current.append(token)


def pulumi_problem(args: list[str]) -> str | None:
    """Why `pulumi ARGS` would be refused by the CLI's parser (None: it parses)."""
    words = [a for a in args if not a.startswith("-")]
    for length in (2, 1):
        if tuple(words[:length]) in PULUMI_COMMANDS:
            path = tuple(words[:length])
            break
    else:
        return f"unknown pulumi command {' '.join(words[:2])!r}"
    own, fewest, most = PULUMI_COMMANDS[path]
    spec = f"{own} {PULUMI_GLOBAL}".split()
    takes_value = {flag.rstrip("=") for flag in spec if flag.endswith("=")}
    known = {flag.rstrip("=") for flag in spec}
    positionals: list[str] = []
    rest = list(args)
    for word in path:
        rest.remove(word)
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            if name not in known:
                return f"pulumi {' '.join(path)} has no flag {name}"
            if name in takes_value and "=" not in arg:
                index += 1
        else:
            positionals.append(arg)
        index += 1
    if not fewest <= len(positionals) <= most:
        return f"pulumi {' '.join(path)} takes {fewest} to {most} arguments, not {positionals}"
    return None


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def argparse_problem(parser_call: object, args: list[str]) -> str | None:
    try:
        parser_call(args)  # type: ignore[operator]
    except SystemExit as exit:
        return f"its parser refuses {args} (exit {exit.code})"
    return None


def astats_problem(args: list[str]) -> str | None:
    """As astats_console.cli.main parses: what it does not know goes to psql, else is refused."""
    try:
        parsed, extra = build_parser().parse_known_args(args)
    except SystemExit as exit:
        return f"astats refuses {args} (exit {exit.code})"
    if extra and parsed.command != "psql":
        return f"astats {parsed.command} has no {extra}"
    return None


def docker_problem(args: list[str]) -> str | None:
    if shutil.which("docker") is None:
        unavailable("docker is not installed: the docs' docker commands cannot be checked")
    words = [a for a in args if not a.startswith("-")]
    command = words[:2] if words[:1] == ["volume"] else words[:1]
    shown = subprocess.run(
        ["docker", *command, "--help"], capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        return f"docker has no command {' '.join(command)!r}"
    for arg in args:
        if arg.startswith("--") and f"{arg.split('=', 1)[0]} " not in shown.stdout:
            return f"docker {' '.join(command)} has no flag {arg}"
    return None


def ci_packages() -> set[str]:
    text = (ROOT / ".ci" / "run").read_text()
    return {name for group in re.findall(r"need\+=\(([^)]*)\)", text) for name in group.split()}


def readme_packages() -> set[str]:
    found: set[str] = set()
    for block in shell_blocks():
        for command in commands(block):
            if command[:2] == ["apt-get", "install"]:
                found |= {word for word in command[2:] if not word.startswith("-")}
    return found


def problem(command: list[str]) -> str | None:
    """Why this documented command would not run as written (None: it checks out)."""
    program, args = command[0], command[1:]
    if program == "pulumi":
        return "run the CLI as scripts/pulumi, which finds scripts/up's state and passphrase"
    if program == "astats":
        return "call the console as venv/bin/astats"
    if program.startswith("scripts/"):
        script = ROOT / program
        if not (script.is_file() and script.stat().st_mode & 0o111):
            return f"{program} is not an executable script"
        name = script.name
        if name == "pulumi":
            return pulumi_problem(args[1:] if args[:1] == ["--dry-run"] else args)
        if name in ("up", "down"):
            stack = args[:1] if args and not args[0].startswith("-") else []
            verb = "up" if name == "up" else "destroy"
            return pulumi_problem([verb, *args[len(stack) :]])
        if name == "new-stack":
            return argparse_problem(load_script("new_stack").parser().parse_args, args)
        if name in ("test", "bootstrap", "e2e"):
            return None if not args else f"{program} is documented without arguments"
        return f"no check for {program}: add one"
    if program in ("venv/bin/astats", "./venv/bin/astats"):
        return astats_problem(args)
    if program in ("venv/bin/python", "./venv/bin/python", "python3"):
        if args[:1] == ["-c"]:
            compile(args[1], "<doc>", "exec")
            return None
        if args[:1] == ["-m"]:
            module = args[1]
            if module == "venv":
                return None
            sys.path.insert(0, str(ROOT))
            try:
                found = importlib.util.find_spec(module)
            finally:
                sys.path.remove(str(ROOT))
            return None if found else f"no module {module}"
        return f"no check for {program} {args[:1]}"
    if program in ("venv/bin/pytest",):
        missing = [a for a in args if not a.startswith("-") and not (ROOT / a).exists()]
        return f"no such test paths: {missing}" if missing else None
    if program.endswith("/bin/pip") and args[:1] == ["install"]:
        files = [args[i + 1] for i, a in enumerate(args) if a == "-r"]
        missing = [f for f in files if not (ROOT / f).is_file()]
        return f"no requirements file {missing}" if missing else None
    if program == "docker":
        return docker_problem(args)
    if program == "apt-get":
        unknown = readme_packages() - ci_packages() - README_ONLY_PACKAGES
        return f"packages .ci/run does not install: {sorted(unknown)}" if unknown else None
    if program == "curl":
        return None if args[-1].startswith("https://") else "curl only from an https URL"
    if program in ("sh", "export"):
        return None
    return f"no check for the program {program!r}: add one"


def test_the_docs_have_shell_blocks_to_check() -> None:
    found = shell_blocks()
    assert len({b.path for b in found}) >= 5 and sum(len(list(commands(b))) for b in found) > 40


def test_every_documented_command_parses_as_written() -> None:
    failures = [
        f"{block.where}: {' '.join(command)}: {reason}"
        for block in shell_blocks()
        for command in commands(block)
        if (reason := problem(command))
    ]
    assert failures == [], "\n".join(failures)


def test_commands_are_in_marked_blocks() -> None:
    """A command in an unmarked block would escape the check above."""
    starts = ("scripts/", "venv/", "./venv/", "pulumi ", "docker ", "python3 ", "astats ")
    unmarked = [
        block.where
        for doc in DOCS
        for block in blocks(doc)
        if block.language == "" and block.text.lstrip().startswith(starts)
    ]
    assert unmarked == [], "mark these blocks ```bash"


def test_no_instruction_runs_the_bare_cli_or_docker_exec() -> None:
    """Inline commands too: `pulumi config set ...` in a sentence needs scripts/pulumi."""
    spans = [(doc, span) for doc in DOCS for span in re.findall(r"`([^`\n]+)`", doc.read_text())]
    # An instruction: the bare CLI with a subcommand and its arguments, or a docker exec.
    bare = re.compile(r"^(pulumi (config|stack|login|state|plugin) \S+ \S|docker exec )")
    offenders = [f"{doc.name}: {span}" for doc, span in spans if bare.match(span)]
    assert offenders == [], "use scripts/pulumi, and astats psql/shell"


def test_the_checks_catch_what_they_are_for() -> None:
    assert pulumi_problem(["preview", "--diff", "--stack", "prod"]) is None
    assert pulumi_problem(["preview", "--dif"]) == "pulumi preview has no flag --dif"
    assert pulumi_problem(["stack", "innit", "x"]) is not None
    assert pulumi_problem(["config", "set", "a", "b", "c"]) is not None
    written = Block(ROOT / "README.md", 1, "bash", "pulumi up --yes   # the bare CLI")
    assert [problem(command) for command in commands(written)] == [
        "run the CLI as scripts/pulumi, which finds scripts/up's state and passphrase"
    ]
    assert problem(["venv/bin/astats", "status", "--wtach"]) is not None
    assert problem(["venv/bin/astats", "--stack", "prod", "logs", "-f"]) is None
    assert problem(["scripts/new-stack", "staging"]) is not None
    assert problem(["scripts/up", "prod", "--yes"]) is None
    assert problem(["scripts/up", "prod", "--yess"]) is not None
    assert problem(["venv/bin/python", "-m", "components.nothing"]) is not None
    assert problem(["make", "all"]) is not None


def test_the_wrapper_passes_every_documented_pulumi_command_through_whole() -> None:
    wrapper = load_script("pulumi_wrapper")
    for block in shell_blocks():
        for command in commands(block):
            if command[0] != "scripts/pulumi":
                continue
            args = command[1:]
            argv = wrapper.plan(args, dry_run=True).argv(ROOT / ".pulumi-state/run/Pulumi.s.yaml")
            assert argv[0] == "pulumi"
            assert any(argv[i : i + len(args)] == args for i in range(len(argv))), argv


def heading_anchors(path: Path) -> set[str]:
    anchors = set()
    for line in path.read_text().splitlines():
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading:
            text = re.sub(r"[`*_\[\]()]", "", heading.group(1)).strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 -]", "", text).replace(" ", "-"))
    return anchors


def test_every_link_between_the_docs_resolves() -> None:
    broken = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (doc.parent / file_part).resolve() if file_part else doc
            if not linked.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and anchor not in heading_anchors(linked):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert broken == []


def test_the_front_page_is_one_screen_and_links_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= FRONT_PAGE_LINES
    for heading in ("## Prerequisites", "## Quick start", "## Going to production", "## Day 2"):
        assert heading in readme
    for doc in DOCS[1:]:
        assert f"(docs/{doc.name})" in readme, f"README.md does not link docs/{doc.name}"


def test_the_quick_start_names_the_url_the_dev_stack_serves() -> None:
    nginx = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["astats:nginx"]
    url = f"http://{nginx['bindAddress']}:{nginx['httpPort']}"
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ")[0]
    assert url in quick_start


def test_the_readme_installs_what_ci_installs() -> None:
    missing = ci_packages() - readme_packages()
    assert missing == set(), f"the README's prerequisites miss {sorted(missing)}"


@pytest.mark.parametrize("script", ["up", "down", "pulumi", "new-stack"])
def test_the_scripts_the_docs_run_say_their_usage(script: str) -> None:
    text = (ROOT / "scripts" / script).read_text()
    assert f"Usage: scripts/{script}" in text

"""The Dockerfile, docker-compose.yml and app.config.Settings describe one deployment: these
tests read all three and fail when they drift apart (a port, a setting, a health check...).
They parse the files only; scripts/container-smoke builds and runs the image."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from app.config import DEFAULT_MODEL, Settings
from nuclei.card import card_path, parse
from nuclei.registry import INT8, model_files, precision

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
SETTING_VARS = {name.upper(): name for name in Settings.model_fields}
TRAINING_ONLY = ("tensorflow", "keras", "tf2onnx", "[train", "[dev", ".[")


# ----------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            words = shlex.split(args)
            if words and "=" not in words[0]:  # legacy `ENV KEY value`
                env[words[0]] = args.split(None, 1)[1].strip()
            else:
                env.update(word.split("=", 1) for word in words)
        return env

    def text(self) -> str:
        return "\n".join(f"{kw} {args}" for kw, args in self.instructions)


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of instructions, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends with a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; the shell form is refused:
    it needs /bin/sh and does not forward SIGTERM to the server."""
    words = json.loads(args)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), args
    return words


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def exposed_port(final: Stage) -> int:
    ports = [p.split("/")[0] for args in final.all("EXPOSE") for p in args.split()]
    assert len(ports) == 1, f"expected one EXPOSE port in the final stage, got {ports}"
    return int(ports[0])


# ------------------------------------------------------------------------- docker-compose


INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR:-default}` with the given environment (none: every default)."""
    env = env or {}

    def one(match: re.Match[str]) -> str:
        name, op, default = match["name"], match["op"], match["default"]
        if name in env and (env[name] or op != ":-"):
            return env[name]
        assert op in (":-", "-"), f"${{{name}}} has no default"
        return default

    return INTERPOLATION.sub(one, str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def service(compose: dict[str, Any]) -> dict[str, Any]:
    services = compose.get("services")
    assert isinstance(services, dict) and len(services) == 1, "expected exactly one service"
    (svc,) = services.values()
    assert isinstance(svc, dict)
    return svc


@pytest.fixture(scope="module")
def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment")
    if isinstance(env, list):  # `- KEY=value` / `- KEY` form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    assert isinstance(env, dict) and env, "the service has no environment"
    return {k: None if v is None else str(v) for k, v in env.items()}


def container_port(mapping: Any) -> int:
    """The container side of a `ports:` entry, short ("[ip:]host:container[/proto]") or long."""
    if isinstance(mapping, dict):
        return int(interpolate(mapping["target"]))
    return int(interpolate(mapping).split("/")[0].rsplit(":", 1)[-1])


# ------------------------------------------------------------------------------ the image


def test_dockerfile_is_multi_stage_on_python_slim(stages: list[Stage], final: Stage) -> None:
    assert len(stages) >= 2, "a builder stage and a final stage"
    for stage in stages:
        assert stage.base == "python:3.11-slim", stage.base
    builders = {s.name for s in stages[:-1]}
    sources = [re.search(r"--from=(\S+)", a) for a in final.all("COPY")]
    assert any(m and m[1] in builders for m in sources), "the final stage copies from the builder"
    assert not final.all("RUN") or all("pip" not in a for a in final.all("RUN")), (
        "the final stage installs nothing: it copies the builder's virtual environment"
    )


def test_builder_installs_runtime_dependencies_only(stages: list[Stage]) -> None:
    installs = [a for s in stages for a in s.all("RUN") if re.search(r"\bpip install\b", a)]
    assert installs, "no `pip install` in the Dockerfile"
    for args in installs:
        assert re.search(r"\bpip install (--\S+ )*\.(\s|$)", args), f"expected `pip install .`: {args}"
        for word in TRAINING_ONLY:
            assert word not in args.lower(), f"training/test dependency in the image: {args}"


def test_final_stage_has_no_training_dependencies_or_tests(final: Stage) -> None:
    text = final.text().lower()
    for word in ("tensorflow", "keras", "tf2onnx", "pytest", "hypothesis"):
        assert word not in text, f"{word} in the final stage"
    copies = " ".join(final.all("COPY") + final.all("ADD"))
    for path in ("tests", "training", "samples", "data", "runs", ". ", "./ "):
        assert not re.search(rf"(^|\s){re.escape(path)}", copies + " "), f"the final stage copies {path!r}"


def test_final_stage_runs_as_numeric_non_root_user(final: Stage) -> None:
    user = final.last("USER")
    assert user, "no USER in the final stage: the server would run as root"
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a numeric, non-zero uid"
    assert not gid or (gid.isdigit() and int(gid) != 0), f"USER {user}: a numeric, non-zero gid"


def test_final_stage_healthcheck_uses_python_not_curl(final: Stage) -> None:
    check = final.last("HEALTHCHECK")
    assert check, "no HEALTHCHECK in the final stage"
    command = check[check.index("CMD") + 3 :].strip()
    words = exec_form(command)
    assert words[0] == "python" and "urllib" in " ".join(words), words
    assert "/health" in " ".join(words)
    assert not re.search(r"\b(curl|wget)\b", check)


def test_final_stage_serves_the_app_on_all_interfaces(final: Stage, exposed_port: int) -> None:
    assert exec_form(final.last("CMD") or "null") == ["python", "-m", "app"]
    env = final.env()
    assert env.get("HOST") == "0.0.0.0"
    assert int(env["PORT"]) == exposed_port
    assert env.get("PATH", "").startswith("/opt/venv/bin:"), "the venv's python comes first on PATH"


def copied_models(final: Stage) -> dict[str, PurePosixPath]:
    """The files of the checkout's models/ the final stage copies (its COPY sources, globs
    expanded, less what .dockerignore keeps out of the build context) → the folder each lands in."""
    copied = {}
    for words in (shlex.split(a) for a in final.all("COPY")):
        sources, dest = [w for w in words[:-1] if not w.startswith("--")], words[-1]
        for source in sources:
            literal = not any(c in source for c in "*?[")
            assert not (literal and dockerignored(source)), f"COPY {source}: .dockerignore keeps it out of the build"
            for path in sorted(ROOT.glob(source)) if source.startswith("models/") else ():
                name = path.relative_to(ROOT).as_posix()
                if not dockerignored(name):
                    copied[name] = PurePosixPath(dest.rstrip("/"))
    return copied


def dockerignored(path: str) -> bool:
    """.dockerignore's rule: the last pattern that matches decides; `!` lets a path back in."""
    ignored = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatchcase(path, pattern) or path.startswith(f"{pattern}/"):
            ignored = not negated
    return ignored


def test_the_model_is_copied_where_model_path_points(final: Stage) -> None:
    model = PurePosixPath(final.env()["MODEL_PATH"])
    copied = copied_models(final)
    assert copied.get(f"models/{model.name}") == model.parent, f"models/{model.name} is copied to MODEL_PATH's folder"
    assert copied.get(f"models/{model.with_suffix('.json').name}") == model.parent, "the model card travels with it"
    assert model.name == DEFAULT_MODEL.name, "the image serves the same model as make serve"


def test_the_image_serves_the_int8_models_only(final: Stage) -> None:
    """Every model of MODEL_PATH's folder is served, and each used keeps its own memory: the
    limits are sized for INT8 models (docs/deployment.md), so no float32 export goes in."""
    copied = copied_models(final)
    onnx = [name for name in copied if name.endswith(".onnx")]
    assert f"models/{DEFAULT_MODEL.name}" in onnx
    for name in onnx:
        assert precision(parse(card_path(ROOT / name))) == INT8, f"{name} is not an INT8 model"
        assert str(PurePosixPath(name).with_suffix(".json")) in copied, f"{name} without its card"
    float32 = [f"models/{p.name}" for p in model_files(ROOT / "models") if precision(parse(card_path(p))) != INT8]
    assert float32 and not set(float32) & set(copied), "the float32 export (models/nuclei-unet.onnx) stays out"
    assert all(dockerignored(name) for name in float32), "and out of the build context"


def test_dockerignore_keeps_data_venv_and_tests_out() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for path in (".git", ".venv", "data", "runs", "tests", "**/__pycache__"):
        assert path in ignored, f"{path} is not in .dockerignore"
    negated = {line[1:] for line in ignored if line.startswith("!")}
    assert not negated & {".venv", "tests", "data"}


# ---------------------------------------------------------------------------- the service


def test_compose_port_mapping_targets_the_exposed_port(service: dict[str, Any], exposed_port: int) -> None:
    ports = service.get("ports")
    assert ports, "no port mapping"
    assert {container_port(p) for p in ports} == {exposed_port}


def test_compose_healthcheck_is_the_dockerfile_one(service: dict[str, Any], final: Stage) -> None:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", "exec form: the image has no curl and no shell needed"
    assert "/health" in " ".join(test)
    check = final.last("HEALTHCHECK") or ""
    assert test[1:] == exec_form(check[check.index("CMD") + 3 :].strip()), "compose and Dockerfile health checks differ"


def test_compose_environment_variables_are_settings(environment: dict[str, str | None]) -> None:
    unknown = set(environment) - set(SETTING_VARS)
    assert not unknown, f"not fields of app.config.Settings (typo, or a removed setting?): {sorted(unknown)}"


def test_every_setting_is_in_compose(environment: dict[str, str | None]) -> None:
    missing = set(SETTING_VARS) - set(environment)
    assert not missing, f"settings missing from docker-compose.yml's environment: {sorted(missing)}"


def test_compose_defaults_are_valid_and_match(
    environment: dict[str, str | None],
    final: Stage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the container gets with no overrides: compose's defaults, parsed by Settings itself,
    equal the code's defaults, except where the Dockerfile sets the container's own value."""
    image_env = final.env()
    for var in SETTING_VARS:
        monkeypatch.delenv(var, raising=False)
    code_defaults = Settings(_env_file=None)
    for var, value in environment.items():
        if value is None:  # passed through from the shell, else unset
            continue
        assert INTERPOLATION.fullmatch(value), f"{var}: use ${{{var}:-default}}, got {value!r}"
        assert INTERPOLATION.fullmatch(value)["name"] == var, f"{var} interpolates another variable"
        monkeypatch.setenv(var, interpolate(value))
    compose_defaults = Settings(_env_file=None)  # raises if a default does not parse
    for var, name in SETTING_VARS.items():
        got = getattr(compose_defaults, name)
        if var in image_env:
            expected = getattr(Settings(_env_file=None, **{name: image_env[var]}), name)
            assert got == expected, f"{var}: compose default {got!r} != Dockerfile ENV {image_env[var]!r}"
        else:
            assert got == getattr(code_defaults, name), f"{var}: compose default {got!r} != app.config's"


def test_compose_port_default_matches_dockerfile(environment: dict[str, str | None], final: Stage) -> None:
    assert environment["PORT"] is not None
    assert interpolate(environment["PORT"]) == final.env()["PORT"]


def test_compose_root_filesystem_is_read_only_with_a_tmpfs(service: dict[str, Any]) -> None:
    assert service.get("read_only") is True
    tmpfs = service.get("tmpfs")
    mounts = [tmpfs] if isinstance(tmpfs, str) else list(tmpfs or [])
    assert "/tmp" in [m.split(":")[0] for m in mounts], "uploads over 1 MB spool to /tmp"


def test_compose_restarts_and_limits_resources(service: dict[str, Any], environment: dict[str, str | None]) -> None:
    assert service.get("restart") in ("always", "unless-stopped", "on-failure")
    limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
    assert float(limits.get("cpus", 0)) > 0 and limits.get("memory"), "CPU and memory limits"
    grace = str(service.get("stop_grace_period", "10s"))
    seconds = float(grace.rstrip("s")) if re.fullmatch(r"[\d.]+s", grace) else 60 * float(grace.rstrip("m"))
    shutdown = float(interpolate(environment.get("SHUTDOWN_TIMEOUT_S") or "30"))
    assert seconds > shutdown, "the grace period must outlast SHUTDOWN_TIMEOUT_S, or in-flight requests are killed"


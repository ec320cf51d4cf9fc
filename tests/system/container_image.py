"""Build the service's image here, with no registry: a Debian base by mmdebstrap, then the Containerfile.

The base stands in for Docker's slim Python image (`PYTHON_IMAGE`): Debian's python3 with venv,
made by mmdebstrap and imported with `podman import`. The image is then built from the
Containerfile with `podman build --isolation=chroot --network=host`, which needs no container
runtime. This machine's own package settings are used at build time only:

- apt: the enabled Debian sources and any proxy, handed to mmdebstrap; a hook then writes plain
  deb.debian.org sources into the base and removes what mmdebstrap wrote of the host's apt options;
- pip: the settings pip uses here (`pip config list`: its config files and PIP_* variables, the
  proxy variables), written to a pip.conf given to the build as the `pip.conf` secret; the local
  files and folders they name (certificate, constraints, wheel folders, file:// indexes) are
  mounted read-only under /run/host-pip for the build's RUN steps only.

Nothing of either reaches a layer (tests/system/test_container.py checks). What a previous build
left is reused where that is safe: a base image less than a week old built from the same
package list, podman's layer cache (a changed file only rebuilds the layers after it), and the
pip cache mount (wheels downloaded by an earlier build of a changed requirements.txt).

    python tests/system/container_image.py          # build (or reuse) both, print the times
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/kyutai-tts:test"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd", "netbase")
BASE_MAX_AGE = 7 * 24 * 3600
HOST_PIP = "/run/host-pip"
# pip settings that decide where packages come from; anything else stays on the host.
PIP_KEYS = {"index-url", "extra-index-url", "find-links", "trusted-host", "cert", "constraint",
            "proxy", "timeout", "default-timeout", "retries", "no-index", "prefer-binary"}
TOOLS = ("podman", "buildah", "mmdebstrap")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with the tail of its output, which says what went wrong."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-6000:]
        raise RuntimeError(f"{shlex.join(command[:3])} ... failed with {result.returncode}:\n{tail}")
    return result


def image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], capture_output=True).returncode == 0


def image_inspect(tag: str) -> dict:
    return json.loads(run(["podman", "image", "inspect", tag], 60).stdout)[0]


# -- apt: the Debian base -----------------------------------------------------------------------
def os_release() -> dict[str, str]:
    path = Path("/etc/os-release")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.exists() else ()
    return {key: value.strip().strip('"') for key, value in pairs}


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas, current, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line.startswith("#"):
            continue
        elif line[0] in " \t" and key:
            current[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key.strip().lower()] = value.strip()
    return stanzas


def host_debian_sources(codename: str) -> list[str]:
    """The host's enabled sources for `codename` as one-line entries (mirror, suite, components)."""
    entries = []
    apt = Path("/etc/apt")
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        if path.suffix == ".sources":
            for stanza in _deb822_stanzas(path.read_text()):
                if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes") == "no":
                    continue
                for uri in stanza.get("uris", "").split():
                    for suite in stanza.get("suites", "").split():
                        entries.append(f"deb {uri} {suite} {stanza.get('components', 'main')}")
        elif path.suffix == ".list" or path.name == "sources.list":
            for line in path.read_text().splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    entries.append(" ".join(line))
    return [entry for entry in entries if entry.split()[2].split("-")[0].split("/")[0] == codename]


def host_apt_proxy_options() -> list[str]:
    """Acquire::*::Proxy settings of this machine's apt, as mmdebstrap --aptopt values."""
    dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True).stdout
    return [line.rstrip(";") + ";" for line in dump.splitlines()
            if re.match(r'Acquire::(http|https|ftp)::Proxy(::[^ ]+)? "', line)]


def base_tag(codename: str) -> str:
    return f"localhost/kyutai-tts-base:{codename}"


def build_base(workdir: Path, timeout: float = 900) -> tuple[str, float | None]:
    """A Debian base with python3 and venv; reused when a recent one from the same list exists."""
    release = os_release()
    codename = release.get("VERSION_CODENAME") if release.get("ID") == "debian" else None
    codename = codename or "bookworm"
    tag = base_tag(codename)
    if image_exists(tag):
        labels = image_inspect(tag).get("Config", {}).get("Labels") or {}
        built = float(labels.get("built", 0))
        if labels.get("packages") == ",".join(BASE_PACKAGES) and time.time() - built < BASE_MAX_AGE:
            return tag, None
    started = time.monotonic()
    sources = host_debian_sources(codename)
    if not sources:
        sources = [f"deb http://deb.debian.org/debian {codename} main",
                   f"deb http://deb.debian.org/debian {codename}-updates main",
                   f"deb http://deb.debian.org/debian-security {codename}-security main"]
    mirror = workdir / "sources.list"
    mirror.write_text("\n".join(sources) + "\n")
    clean = (f"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {codename} {codename}-updates\n"
             "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
             f"Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: {codename}-security\n"
             "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    (workdir / "debian.sources").write_text(clean)
    tarball = workdir / "base.tar"
    command = ["mmdebstrap", "--variant=apt", "--mode=auto", f"--include={','.join(BASE_PACKAGES)}"]
    for option in host_apt_proxy_options():
        command.append(f"--aptopt={option}")
    # The host's mirror and proxy were for building only: the base gets Debian's public mirror.
    command += [
        "--customize-hook=rm -f \"$1/etc/apt/apt.conf.d/99mmdebstrap\" \"$1/etc/apt/sources.list\"",
        "--customize-hook=rm -rf \"$1/etc/apt/sources.list.d\" && mkdir \"$1/etc/apt/sources.list.d\"",
        f"--customize-hook=upload {workdir / 'debian.sources'} /etc/apt/sources.list.d/debian.sources",
        "--customize-hook=rm -rf \"$1/var/lib/apt/lists\"/* \"$1/var/cache/apt\"/*.bin",
        codename, str(tarball), str(mirror),
    ]
    run(command, timeout)
    run(["podman", "import", "--change", "CMD [\"python3\"]",
         "--change", f"LABEL packages={','.join(BASE_PACKAGES)}",
         "--change", f"LABEL built={int(time.time())}", str(tarball), tag], 600)
    tarball.unlink()
    return tag, time.monotonic() - started


# -- pip: the build-time settings ---------------------------------------------------------------
@dataclass
class PipSettings:
    """A pip.conf for the build, and the host paths to mount for the files it names."""
    values: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)  # host path -> path inside the build

    def conf(self) -> str:
        return "".join(["[global]\n"] + [f"{key} = {value}\n" for key, value in self.values.items()])


def host_pip_values() -> dict[str, str]:
    """pip's settings on this machine: config files, then PIP_* variables, as pip itself merges them."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}).stdout
    files, env = {}, {}
    for line in listed.splitlines():
        match = re.match(r"^([^.=]*)\.([^=]+)='?(.*?)'?$", line.strip())
        if not match:
            continue
        section, key, value = match.groups()
        if key in PIP_KEYS and section in (":env:", "global", "install", "download"):
            (env if section == ":env:" else files)[key] = value
    values = {**files, **env}
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy and "proxy" not in values:
        values["proxy"] = proxy
    return values


def pip_settings_for_build(values: dict[str, str]) -> PipSettings:
    """Rewrite every local path in the settings to a read-only mount under /run/host-pip."""
    settings = PipSettings()

    def local(path: str) -> str:
        host = Path(path).resolve()
        # A file:// index's pages link to ../../files/...: mount the folder that holds `simple`.
        inner = ""
        if host.name == "simple" and host.is_dir():
            host, inner = host.parent, "/simple"
        if str(host) not in settings.mounts:
            settings.mounts[str(host)] = f"{HOST_PIP}/{len(settings.mounts)}-{host.name}"
        return settings.mounts[str(host)] + inner

    for key, value in values.items():
        words = []
        for word in value.split():
            if word.startswith("file://"):
                path = word[len("file://"):]
                if Path(path).exists():
                    word = "file://" + local(path)
                else:
                    continue
            elif word.startswith("/"):
                if not Path(word).exists():
                    continue
                word = local(word)
            words.append(word)
        if words:
            settings.values[key] = " ".join(words)
    return settings


# -- the image ----------------------------------------------------------------------------------
def build_image(base: str, workdir: Path, tag: str = IMAGE, timeout: float = 2400) -> float:
    """podman build of the Containerfile on `base`; returns the seconds it took."""
    pip = pip_settings_for_build(host_pip_values())
    conf = workdir / "pip.conf"
    conf.write_text(pip.conf())
    conf.chmod(0o600)
    command = ["podman", "build", "--isolation=chroot", "--network=host", "--format=docker", "--layers",
               "--build-arg", f"PYTHON_IMAGE={base}", "--secret", f"id=pip.conf,src={conf}",
               "-f", str(ROOT / "Containerfile"), "-t", tag]
    for host, inside in pip.mounts.items():
        command += ["-v", f"{host}:{inside}:ro"]
    started = time.monotonic()
    run(command + [str(ROOT)], timeout)
    return time.monotonic() - started


def build_all(workdir: Path | None = None) -> dict[str, float | None]:
    """Build (or reuse) the base and the image; the seconds each took (None: reused as it was)."""
    with tempfile.TemporaryDirectory(prefix="kyutai-image-") as tmp:
        work = Path(workdir or tmp)
        base, base_seconds = build_base(work)
        image_seconds = build_image(base, work)
    return {"base": base_seconds, "image": image_seconds}


if __name__ == "__main__":
    missing = missing_tools()
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (./run_tests.sh installs them from Debian)")
    print(json.dumps(build_all(), indent=2))

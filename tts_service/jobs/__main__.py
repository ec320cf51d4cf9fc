"""`python -m tts_service.jobs book.md -o book.mp3`: a document made into one audio file by a running service.

The job's id is kept next to the output (`book.mp3.job`): run the same command again after an
interruption (of this command or of the service) and it follows the same job instead of starting
over. Progress comes from the job's Server-Sent Events, shown as a tqdm bar with the time left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests
from tqdm import tqdm

RETRY_SECONDS = 5.0


def _headers(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _error(response: requests.Response) -> str:
    try:
        body = response.json()
        error = body.get("error")
        return error.get("message") if isinstance(error, dict) else str(error)
    except ValueError:
        return response.text[:200]


def _start(args, url: str, marker: Path) -> str:
    """The job to follow: the one named in the marker file if the service still has it, else a new one."""
    if marker.is_file():
        job_id = marker.read_text().strip()
        response = requests.get(f"{url}/v1/audio/jobs/{job_id}", headers=_headers(args.key), timeout=30)
        if response.status_code == 200 and response.json()["status"] in ("queued", "running", "done"):
            print(f"resuming job {job_id}", file=sys.stderr)
            return job_id
    body = {"text": Path(args.input).read_text(encoding="utf-8"), "format": args.format}
    if args.language:
        body["language"] = args.language
    if args.voice:
        body["voice"] = args.voice
    response = requests.post(f"{url}/v1/audio/jobs", json=body, headers=_headers(args.key), timeout=60)
    if response.status_code != 202:
        raise SystemExit(f"the service refused the text ({response.status_code}): {_error(response)}")
    job_id = response.json()["id"]
    marker.write_text(job_id + "\n")
    return job_id


def _follow(args, url: str, job_id: str) -> dict:
    """Show the job's progress until it ends; a dropped connection is opened again."""
    bar = tqdm(total=None, unit="char", unit_scale=True, dynamic_ncols=True, desc="speaking")
    state: dict = {}
    try:
        while True:
            try:
                with requests.get(f"{url}/v1/audio/jobs/{job_id}/events", headers=_headers(args.key), stream=True,
                                  timeout=(10, 120)) as response:
                    if response.status_code == 404:
                        raise SystemExit(f"job {job_id} is gone from the service (deleted or expired)")
                    if response.status_code != 200:
                        raise requests.ConnectionError(_error(response))
                    for line in response.iter_lines(decode_unicode=True):
                        if not line or not line.startswith("data:"):
                            continue
                        state = json.loads(line[5:])
                        if "progress" not in state:
                            continue
                        progress = state["progress"]
                        bar.total = progress["characters"]
                        bar.n = progress["characters_done"]
                        left = progress.get("seconds_left")
                        bar.set_postfix_str(f"{progress['audio_seconds'] / 60:.1f} min of audio"
                                            + (f", about {left / 60:.1f} min left" if left else ""))
                        bar.refresh()
                if state.get("status") in ("done", "failed", "cancelled"):
                    return state
            except requests.RequestException as exc:
                bar.write(f"lost the service ({exc}); trying again in {RETRY_SECONDS:.0f} s")
                time.sleep(RETRY_SECONDS)
    finally:
        bar.close()


def _download(args, url: str, state: dict, output: Path) -> None:
    """The joined file, resumed with a Range request where an earlier download stopped."""
    partial = output.with_name(output.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    headers = {**_headers(args.key), **({"Range": f"bytes={have}-"} if have else {})}
    with requests.get(f"{url}{state['audio_url']}", headers=headers, stream=True, timeout=(10, 300)) as response:
        if response.status_code not in (200, 206):
            raise SystemExit(f"could not download the audio ({response.status_code}): {_error(response)}")
        mode = "ab" if response.status_code == 206 else "wb"
        with open(partial, mode) as handle:
            for chunk in response.iter_content(chunk_size=1 << 16):
                handle.write(chunk)
    os.replace(partial, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tts_service.jobs", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="a text or Markdown file; its headings become chapters")
    parser.add_argument("-o", "--output", help="the audio file to write (default: the input's name, .mp3)")
    parser.add_argument("--url", default=os.environ.get("TTS_URL", "http://127.0.0.1:5001"),
                        help="the running service (default: $TTS_URL or http://127.0.0.1:5001)")
    parser.add_argument("--key", default=os.environ.get("TTS_API_KEY") or None, help="the API key, if it has one")
    parser.add_argument("--language")
    parser.add_argument("--voice")
    parser.add_argument("--format", choices=("mp3", "opus", "wav", "flac"))
    args = parser.parse_args(argv)
    output = Path(args.output or Path(args.input).with_suffix(f".{args.format or 'mp3'}"))
    args.format = args.format or (output.suffix.lstrip(".") if output.suffix.lstrip(".") in
                                  ("mp3", "opus", "wav", "flac") else "mp3")
    url = args.url.rstrip("/")
    marker = output.with_name(output.name + ".job")
    job_id = _start(args, url, marker)
    state = _follow(args, url, job_id)
    if state.get("status") != "done":
        marker.unlink(missing_ok=True)
        raise SystemExit(f"the job {state.get('status')}: {state.get('error', '')}")
    _download(args, url, state, output)
    marker.unlink(missing_ok=True)
    chapters = ", ".join(f"{c['title']} at {c['start']:.0f} s" for c in state.get("chapters", []))
    print(f"wrote {output} ({state['progress']['audio_seconds'] / 60:.1f} min)" + (f"; chapters: {chapters}"
                                                                                   if chapters else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

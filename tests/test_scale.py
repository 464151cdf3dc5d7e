"""Scale-out on a real local multi-node Ray cluster (a head and one worker node on 127.0.0.1, one
CPU each, started and stopped here): eval rows identical to a local run, a worker node killed in
the middle of a run, Ctrl-C and resume, retries, GoP-parallel video byte-identical to one
process, folder encodes that skip what is done. The local-process paths are checked too."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import ray
from _clips import FAST, moving_pattern
from click.testing import CliRunner

from dappled.cli.main import cli
from dappled.codec.api import decode_image, encode_image
from dappled.codec.video import decode_video
from dappled.datasets import SAMPLE_IMAGE, load_image, save_image
from dappled.errors import InputError, OptionError
from dappled.eval import sweep
from dappled.eval.evaluate import EvalSpec, evaluate
from dappled.eval.metrics import psnr
from dappled.scale import runner
from dappled.scale.folder import MANIFEST, encode_folder, folder_inputs, settings_from
from dappled.scale.gops import encode_video_gops

pytestmark = [pytest.mark.ray, pytest.mark.slow]
# the helper tasks below travel by value (the workers cannot import this test module)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMING = ("encode_s", "decode_s", "finished_utc")
RAY_EXE = str(Path(sys.executable).parent / "ray")


class LocalCluster:
    """A head node and one worker node, each `ray start --block` in its own process group."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="dplray", dir="/tmp"))  # short: unix socket paths
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # workers get it from the job
        self.env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000"]
        self.head = self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false",
                                         f"--temp-dir={self.tmp}", *common])
        self.worker: subprocess.Popen[bytes] | None = None
        self._wait_for(cpus=1)
        self.start_worker()

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen([RAY_EXE, "start", *args], stdout=log, stderr=log, env=self.env,
                                    start_new_session=True)

    def _wait_for(self, cpus: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
                try:
                    alive = [n for n in ray.nodes() if n["Alive"]]
                    if ray.cluster_resources().get("CPU", 0) == cpus and len(alive) == cpus:
                        return
                finally:
                    ray.shutdown()
            except (ConnectionError, RuntimeError):
                pass
            time.sleep(1)
        raise RuntimeError(f"the test cluster did not reach {cpus} CPUs; logs in {self.tmp}")

    def start_worker(self) -> None:
        self.worker = self._start("worker", [f"--address={self.address}", *(
            "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000")])
        self._wait_for(cpus=2)

    def kill_worker(self) -> None:
        """The worker node dies at once: its raylet, object store and worker processes."""
        assert self.worker is not None
        _kill_group(self.worker, signal.SIGKILL)
        self.worker = None

    def stop(self) -> None:
        for p in (self.worker, self.head):
            if p is not None:
                _kill_group(p, signal.SIGTERM)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _kill_group(p: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group of a `ray start` (raylet, gcs, workers); SIGKILL what is left after
    a few seconds."""
    for signum, grace in ((sig, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(p.pid, signum)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            p.poll()
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    p.poll()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small crops of the sample image in a folder."""
    folder = tmp_path_factory.mktemp("scale_crops")
    image = load_image(SAMPLE_IMAGE)
    save_image(folder / "a.png", image[40:136, 300:428])
    save_image(folder / "b.png", image[250:346, 500:628])
    save_image(folder / "c.png", image[100:164, 0:96])
    return folder


def _rows(out: Path) -> list[dict[str, object]]:
    rows = sweep.load_results(out)
    return sorted(({k: v for k, v in r.items() if k not in TIMING} for r in rows),
                  key=lambda r: (r["series"], r["params"], r["image"]))


def _keys_once(out: Path, expected: int) -> None:
    keys = [sweep.row_key(r) for r in sweep.load_results(out)]
    assert len(keys) == expected and len(set(keys)) == expected
    with open(out / sweep.RESULTS_CSV) as f:
        assert len(f.read().strip().splitlines()) == expected + 1


# ---------------------------------------------------------------- eval


def test_eval_on_the_cluster_gives_the_local_rows(cluster: LocalCluster, crops: Path, tmp_path: Path) -> None:
    spec = {"codecs": ["jpeg", "jxl"], "dataset": str(crops),
            "params": ["jpeg:quality=20,60", "jxl:quality=30,70"], "progress": False}
    local = evaluate(EvalSpec(out_dir=str(tmp_path / "local"), **spec))
    remote = evaluate(EvalSpec(out_dir=str(tmp_path / "ray"), ray=cluster.address, **spec))
    assert local.ran == remote.ran == 12
    assert _rows(tmp_path / "local") == _rows(tmp_path / "ray")
    _keys_once(tmp_path / "ray", 12)
    assert (tmp_path / "ray" / "summary.md").exists() and (tmp_path / "ray" / "rd.png").exists()
    again = evaluate(EvalSpec(out_dir=str(tmp_path / "ray"), ray=cluster.address, **spec))
    assert again.ran == 0 and again.skipped == 12


def test_workers_run_the_drivers_code(cluster: LocalCluster) -> None:
    import dappled

    # the nodes were started without PYTHONPATH: the job's runtime environment names the package
    with runner.open_backend(ray=cluster.address) as backend:
        got: dict[int, str] = {}
        runner.run_all(backend, _package_file, 2, lambda i: (), lambda i, r: got.__setitem__(i, r))
    assert got == {0: dappled.__file__, 1: dappled.__file__}


def _package_file() -> str:
    import dappled

    return dappled.__file__


def _flaky(marker: str, i: int) -> int:
    """Fails the first time it runs for a given marker file (a task failure that is not bad input)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("transient failure")
    return i * i


def test_a_failed_task_is_retried_and_handed_over_once(cluster: LocalCluster, tmp_path: Path) -> None:
    retried: list[int] = []
    got: list[tuple[int, int]] = []
    with runner.open_backend(ray=cluster.address) as backend:
        runner.run_all(backend, _flaky, 3, lambda i: (str(tmp_path / f"m{i}"), i),
                       lambda i, r: got.append((i, r)), on_retry=lambda i, exc: retried.append(i))
    assert sorted(got) == [(0, 0), (1, 1), (2, 4)]
    assert sorted(retried) == [0, 1, 2]


def test_bad_input_on_a_worker_is_the_one_line_error(cluster: LocalCluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"x\.png: cannot read image"):
        evaluate(EvalSpec(codecs=["jpeg"], dataset=str(bad), params=["jpeg:quality=20"],
                          out_dir=str(tmp_path / "out"), ray=cluster.address, progress=False))


def test_ctrl_c_leaves_a_resumable_run(cluster: LocalCluster, crops: Path, tmp_path: Path) -> None:
    series = sweep.plan_series(["jpeg"], 3, ["jpeg:quality=10,30,50,70"])
    images = sweep.image_refs(sorted(crops.glob("*.png")))
    out = tmp_path / "run"

    def interrupt(row: dict[str, object]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(series, images, out, ray=cluster.address, progress=False, on_row=interrupt)
    assert len(sweep.load_results(out)) == 1
    outcome = sweep.run_sweep(series, images, out, ray=cluster.address, progress=False)
    assert outcome.done_before == 1 and outcome.ran == 11
    _keys_once(out, 12)


def _default_sigint() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_to_the_cli_leaves_a_resumable_run(cluster: LocalCluster, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = load_image(SAMPLE_IMAGE)
    for i, view in enumerate((image, image[::-1], image[:, ::-1])):
        save_image(folder / f"{'abc'[i]}.png", np.ascontiguousarray(view))
    out = tmp_path / "run"
    exe = shutil.which("dappled", path=str(Path(sys.executable).parent))
    assert exe is not None
    cmd = [exe, "eval", "--dataset", str(folder), "--codec", "jp2", "--codec", "jxl", "--param",
           "jp2:bpp=0.3,0.8,1.5", "--param", "jxl:quality=20,50,80", "--out", str(out), "--ray",
           cluster.address, "--quiet"]
    # the child gets SIGINT as a terminal gives it (pytest's process may have it ignored or blocked
    # by then, and a child inherits both)
    parent = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not (out / sweep.RESULTS_JSON).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=60)
    done = len(sweep.load_results(out))
    assert proc.returncode != 0 and 1 <= done < 18, (proc.returncode, done, err, parent)
    assert "Traceback" not in err
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{18 - done} point(s) run, {done} already done" in res.stdout
    _keys_once(out, 18)


# ---------------------------------------------------------------- video by groups


def test_gop_parallel_video_is_byte_identical(cluster: LocalCluster) -> None:
    frames = moving_pattern(6)
    one = encode_video_gops(frames, Fraction(25), kbps=160, gop=2, **FAST)
    spread = encode_video_gops(frames, Fraction(25), kbps=160, gop=2, ray=cluster.address, **FAST)
    assert spread.data == one.data
    out = decode_video(one.data)
    assert len(out) == 6 and min(psnr(a, b) for a, b in zip(frames, out, strict=True)) > 18
    assert [s.type for s in one.stats] == [0, 1, 0, 1, 0, 1]  # every group opens with an intra frame
    assert [s.frame for s in spread.stats] == list(range(6))


def test_gop_parallel_cli(cluster: LocalCluster, tmp_path: Path) -> None:
    from dappled.datasets.video import write_video

    src = tmp_path / "clip.mkv"
    write_video(src, moving_pattern(4), 25)
    opts = [w for k, v in FAST.items() for w in ("-O", f"{k}={v}")]
    common = ["encode", str(src), "--kbps", "150", "--gop", "2", "--quiet", *opts]
    a, b = tmp_path / "one.dpl", tmp_path / "ray.dpl"
    res = CliRunner().invoke(cli, [*common, "-o", str(a), "--independent-gops"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, [*common, "-o", str(b), "--ray", cluster.address])
    assert res.exit_code == 0, res.output
    assert "4 frames 64x48" in res.output
    assert a.read_bytes() == b.read_bytes()


# ---------------------------------------------------------------- folders


def test_folder_encode_on_the_cluster_skips_what_is_done(cluster: LocalCluster, crops: Path,
                                                         tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(crops, src)
    out = tmp_path / "out"
    settings = settings_from("jpeg", 40, None, "cpu", 0, {"subsampling": "444"})
    first = encode_folder(str(src), out, settings, ray=cluster.address, progress=False)
    assert sorted(first.encoded) == ["a.dpl", "b.dpl", "c.dpl"] and not first.skipped
    for name in ("a", "b", "c"):
        expected = encode_image(load_image(src / f"{name}.png"), "jpeg", quality=40, subsampling="444")
        assert (out / f"{name}.dpl").read_bytes() == expected
    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.dpl")}
    again = encode_folder(str(src), out, settings, ray=cluster.address, progress=False)
    assert again.encoded == [] and sorted(again.skipped) == ["a.dpl", "b.dpl", "c.dpl"]
    assert stamp == {p.name: p.stat().st_mtime_ns for p in out.glob("*.dpl")}
    # a changed source and a deleted output are coded again; the rest is skipped (local processes)
    save_image(src / "b.png", load_image(src / "b.png")[::-1])
    (out / "c.dpl").unlink()
    third = encode_folder(str(src), out, settings, jobs=2, progress=False)
    assert sorted(third.encoded) == ["b.dpl", "c.dpl"] and third.skipped == ["a.dpl"]
    # other settings: everything again
    fourth = encode_folder(str(src / "*.png"), out, settings_from("jpeg", 41, None, "cpu", 0, {}),
                           ray=cluster.address, progress=False)
    assert len(fourth.encoded) == 3
    doc = json.loads((out / MANIFEST).read_text())
    assert sorted(doc["outputs"]) == ["a.dpl", "b.dpl", "c.dpl"]


# ---------------------------------------------------------------- a worker node dies (keep last)


def test_a_killed_worker_node_loses_no_row(cluster: LocalCluster, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = load_image(SAMPLE_IMAGE)  # 768x512: each point takes a noticeable moment
    save_image(folder / "a.png", image)
    save_image(folder / "b.png", np.ascontiguousarray(image[::-1]))
    save_image(folder / "c.png", np.ascontiguousarray(image[:, ::-1]))
    series = sweep.plan_series(["jp2", "jxl"], 3, ["jp2:bpp=0.3,0.8,1.5", "jxl:quality=20,50,80"])
    images = sweep.image_refs(sorted(folder.glob("*.png")))
    out = tmp_path / "run"
    seen: list[int] = []

    def kill_after_first(row: dict[str, object]) -> None:
        seen.append(1)
        if len(seen) == 1:
            cluster.kill_worker()

    try:
        outcome = sweep.run_sweep(series, images, out, ray=cluster.address, progress=False,
                                  on_row=kill_after_first)
    finally:
        if cluster.worker is None:
            cluster.start_worker()
    assert outcome.ran == 18 and len(seen) == 18
    _keys_once(out, 18)
    local = tmp_path / "local"
    sweep.run_sweep(series, images, local, jobs=2, progress=False)
    assert _rows(out) == _rows(local)


# ---------------------------------------------------------------- without Ray


def test_folder_inputs_and_errors(crops: Path, tmp_path: Path) -> None:
    assert [p.name for p in folder_inputs(str(crops))] == ["a.png", "b.png", "c.png"]
    assert [p.name for p in folder_inputs(str(crops / "[ab].png"))] == ["a.png", "b.png"]
    clash = tmp_path / "clash"
    clash.mkdir()
    shutil.copy(crops / "a.png", clash / "x.png")
    (clash / "x.jpg").write_bytes((crops / "a.png").read_bytes())
    with pytest.raises(InputError, match=r"both be coded to x\.dpl"):
        folder_inputs(str(clash))
    with pytest.raises(InputError, match="no images"):
        folder_inputs(str(tmp_path / "none" / "*.png"))
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text("{broken")
    with pytest.raises(InputError, match="not a manifest"):
        encode_folder(str(crops), out, settings_from("jpeg", 40, None, "cpu", 0, {}), progress=False)
    with pytest.raises(OptionError, match="quality"):
        encode_folder(str(crops), tmp_path / "o2", settings_from("jpeg", 400, None, "cpu", 0, {}),
                      progress=False)


def test_folder_encode_cli_and_bad_image(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["encode", str(crops), "-o", str(out), "--codec", "jpeg", "-q", "30",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert "3 image(s) encoded" in res.output and "0 already done" in res.output
    assert decode_image((out / "a.dpl").read_bytes()).shape == (96, 128, 3)
    res = CliRunner().invoke(cli, ["encode", str(crops), "-o", str(out), "--codec", "jpeg", "-q", "30",
                                   "--quiet", "-j", "2"])
    assert res.exit_code == 0 and "3 already done" in res.output
    bad = tmp_path / "bad"
    shutil.copytree(crops, bad)
    (bad / "z.png").write_bytes(b"garbage")
    res = CliRunner().invoke(cli, ["encode", str(bad), "-o", str(tmp_path / "o2"), "--codec", "jpeg",
                                   "--quiet"])
    assert res.exit_code == 1 and f"{bad / 'z.png'}: cannot read image (not an image file" in res.stderr
    assert "Traceback" not in res.output and "BytesIO" not in res.stderr
    res = CliRunner().invoke(cli, ["encode", str(crops / "a.png"), "-o", str(tmp_path / "a.dpl"),
                                   "--codec", "jpeg", "-j", "2"])
    assert res.exit_code == 2 and "--jobs and --ray" in res.stderr


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_folder_manifest_hashes_outputs_and_guards_other_sources(crops: Path, tmp_path: Path) -> None:
    src = tmp_path / "D"
    shutil.copytree(crops, src)
    out = tmp_path / "out"
    settings = settings_from("jpeg", 40, None, "cpu", 0, {})
    first = encode_folder(str(src / "*.png"), out, settings, progress=False)
    assert sorted(first.encoded) == ["a.dpl", "b.dpl", "c.dpl"]
    doc = json.loads((out / MANIFEST).read_text())
    assert doc["version"] == 2
    for name in "abc":
        entry = doc["outputs"][f"{name}.dpl"]
        assert entry["source"] == os.path.abspath(src / f"{name}.png")
        assert entry["sha256"] == _sha256(out / f"{name}.dpl")
        assert entry["source_sha256"] == _sha256(src / f"{name}.png")
    # an output changed in place (same size) is found by its hash and coded again
    good = (out / "b.dpl").read_bytes()
    (out / "b.dpl").write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    again = encode_folder(str(src / "*.png"), out, settings, progress=False)
    assert again.encoded == ["b.dpl"] and sorted(again.skipped) == ["a.dpl", "c.dpl"]
    assert (out / "b.dpl").read_bytes() == good
    # a.jpg would replace a.dpl, coded from a.png: refused before anything is coded
    save_image(src / "a.jpg", load_image(src / "a.png")[::-1])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = CliRunner().invoke(cli, ["encode", str(src / "*.jpg"), "-o", str(out), "--codec", "jpeg",
                                   "-q", "40", "--quiet"])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src / "a.jpg") in lines[0] and "--overwrite" in lines[0], res.stderr
    assert f"{out / 'a.dpl'} was coded from {os.path.abspath(src / 'a.png')}" in lines[0]
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}
    res = CliRunner().invoke(cli, ["encode", str(src / "*.jpg"), "-o", str(out), "--codec", "jpeg",
                                   "-q", "40", "--quiet", "--overwrite"])
    assert res.exit_code == 0 and "1 image(s) encoded" in res.output, res.output
    entry = json.loads((out / MANIFEST).read_text())["outputs"]["a.dpl"]
    assert entry["source"] == os.path.abspath(src / "a.jpg") and entry["sha256"] == _sha256(out / "a.dpl")
    assert decode_image((out / "a.dpl").read_bytes()).shape == (96, 128, 3)
    # a file the manifest does not know is not replaced either
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.dpl").write_bytes(b"mine")
    with pytest.raises(InputError, match=r"c\.dpl exists and is not in encode-manifest\.json"):
        encode_folder(str(src / "*.png"), other, settings, progress=False)
    assert (other / "c.dpl").read_bytes() == b"mine" and not (other / "a.dpl").exists()


def test_folder_ctrl_c_leaves_a_resumable_run(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = settings_from("jpeg", 40, None, "cpu", 0, {})

    def interrupt(name: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_folder(str(crops), out, settings, progress=False, on_file=interrupt)
    outputs = json.loads((out / MANIFEST).read_text())["outputs"]
    assert list(outputs) == ["a.dpl"] and outputs["a.dpl"]["sha256"] == _sha256(out / "a.dpl")
    assert sorted(p.name for p in out.iterdir()) == ["a.dpl", MANIFEST]  # no temporary files
    rest = encode_folder(str(crops), out, settings, progress=False)
    assert rest.skipped == ["a.dpl"] and sorted(rest.encoded) == ["b.dpl", "c.dpl"]


def test_sigint_to_a_folder_encode_exits_130_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = load_image(SAMPLE_IMAGE)
    for i in range(3):
        save_image(folder / f"{'abc'[i]}.png", np.ascontiguousarray(image[64 * i:64 * i + 48, 0:64]))
    out = tmp_path / "out"
    exe = shutil.which("dappled", path=str(Path(sys.executable).parent))
    assert exe is not None
    cmd = [exe, "encode", str(folder), "-o", str(out), "--codec", "field", "-O", "iterations=150", "--quiet",
           "-j", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 300
    while not list(out.glob("*.dpl")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip() == "dappled: error: interrupted", err
    outputs = json.loads((out / MANIFEST).read_text())["outputs"]
    assert 1 <= len(outputs) <= 2, outputs
    assert all(v["sha256"] == _sha256(out / k) for k, v in outputs.items())
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"{3 - len(outputs)} image(s) encoded" in res.stdout
    assert f"{len(outputs)} already done" in res.stdout


def test_ray_address_errors(crops: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["eval", "--dataset", str(crops), "--codec", "jpeg", "--param",
                                   "jpeg:quality=20", "--out", str(tmp_path / "o"), "--ray", "",
                                   "--quiet"])
    assert res.exit_code == 2 and "--ray wants an address" in res.stderr
    res = CliRunner().invoke(cli, ["eval", "--video", "x.mp4", "--ray", "local"])
    assert res.exit_code == 2 and "--ray is for image evaluations" in res.stderr


def test_local_process_gops_match_one_process() -> None:
    frames = moving_pattern(4)
    one = encode_video_gops(frames, Fraction(25), kbps=160, gop=2, **FAST)
    two = encode_video_gops(frames, Fraction(25), kbps=160, gop=2, jobs=2, **FAST)
    assert one.data == two.data
    with pytest.raises(OptionError, match="gop"):
        encode_video_gops(frames, Fraction(25), kbps=160, gop=0, **FAST)


def test_ray_local_starts_and_stops_a_runtime_here(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["encode", str(crops), "-o", str(out), "--codec", "jpeg", "-q", "30",
                                   "--quiet", "--ray", "local"])
    assert res.exit_code == 0, res.output
    assert "3 image(s) encoded" in res.output
    assert (out / "b.dpl").read_bytes() == encode_image(load_image(crops / "b.png"), "jpeg", quality=30)
    assert not ray.is_initialized()


def test_jobs_with_a_cluster_address_is_a_usage_error(cluster: LocalCluster, crops: Path,
                                                      tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["eval", "--dataset", str(crops), "--codec", "jpeg", "--param",
                                   "jpeg:quality=20", "--out", str(tmp_path / "o"), "--quiet", "-j", "2",
                                   "--ray", cluster.address])
    assert res.exit_code == 2 and "--jobs is for local runs" in res.stderr

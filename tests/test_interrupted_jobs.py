"""A training job stopped mid-fit, as a scheduler, Ctrl-C or the out-of-memory killer stops it: SIGKILL leaves an
abandoned staged run that `runs clean` removes, SIGTERM and a killed kernel move it to failed with its notebook and log,
and a stopped cell's tasks end with the kernel. These need a fit that lasts seconds, the example's boosted trees with
30,000 rounds; reproducing and refusing runs is tested on the toy's runs in lib/tests/test_reproduce.py."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from nbprod.runs import STAGING, list_runs, run_table

from conftest import BIN, house_prices_cli


def runs_cli(store, *args):
    return house_prices_cli("runs", "--runs-dir", store, *args)


def fitting(runs_dir):
    "Whether the staged notebook (saved by papermill at every cell) shows the fit cell running."
    for nb in (runs_dir / STAGING).glob("*/train.ipynb"):
        try: cells = json.loads(nb.read_text())["cells"]
        except (ValueError, OSError): continue  # being written
        return any("fit(train_rows" in "".join(c["source"]) and c["metadata"].get("papermill", {}).get("status") == "running"
                   for c in cells)
    return False


def test_sigkill_mid_fit_leaves_no_finished_run(tmp_path):
    proc = subprocess.Popen([str(BIN / "house-prices"), "train", "--no-progress", "-p", "runs_dir", str(tmp_path),
                             "-p", "gbm_n_estimators", "30000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not fitting(tmp_path):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert fitting(tmp_path), "the job never reached the fit cell"
        time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert list_runs(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snapshots", STAGING]  # the data snapshot is complete or absent
    [row] = run_table(tmp_path)
    assert row.status == "abandoned"
    r = runs_cli(tmp_path, "list")
    assert r.returncode == 0 and "abandoned" in r.stdout
    r = runs_cli(tmp_path, "clean")  # a dry run: says what it would remove
    assert r.returncode == 0 and f"would remove {row.path}" in r.stdout and row.path.exists()
    r = runs_cli(tmp_path, "clean", "--yes")
    assert r.returncode == 0 and f"removed {row.path}" in r.stdout and not row.path.exists()
    assert run_table(tmp_path) == []


def fitting_job(runs_dir):
    "A `train` command started with a long fit, once its notebook shows the fit cell running."
    proc = subprocess.Popen([str(BIN / "house-prices"), "train", "--no-progress", "-p", "runs_dir", str(runs_dir),
                             "-p", "gbm_n_estimators", "30000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not fitting(runs_dir):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert fitting(runs_dir), "the job never reached the fit cell"
    return proc


def test_sigterm_mid_fit_moves_the_staged_run_to_failed(tmp_path):
    proc = fitting_job(tmp_path)
    proc.send_signal(signal.SIGTERM)  # as a scheduler stops a job: the command cleans up after itself
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err  # the kernel's own log lines go to the run's .kernel.log
    assert list_runs(tmp_path) == [] and not list((tmp_path / STAGING).iterdir())
    [row] = run_table(tmp_path)
    assert row.status == "failed" and (row.path / ".kernel.log").is_file()  # kept for its executed notebook and log, never read as a run


def test_a_stopped_cells_tasks_end_with_the_kernels_shutdown(tmp_path):
    # Stopped mid-cell (SIGTERM, Ctrl-C), the job leaves nbclient's tasks for the cell pending: one polls every second whether
    # the kernel lives. Left pending through the shutdown, it could find the kernel dead and end with an error nobody reads,
    # which asyncio prints with a traceback at exit. The job's kernel manager ends them as it shuts the kernel down.
    import asyncio
    import gc

    import nbformat
    from nbclient import NotebookClient
    from nbprod.config import get_settings
    from nbprod.job import ipc_kernel_manager
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time; time.sleep(60)")])
    client = NotebookClient(nb, kernel_name=get_settings().kernel_name, kernel_manager_class=ipc_kernel_manager(tmp_path))
    unread, cell = [], {}

    async def stopped_mid_cell():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unread.append(context))
        async with client.async_setup_kernel():
            cell["task"] = asyncio.ensure_future(client.async_execute_cell(nb.cells[0], 0))
            await asyncio.sleep(3)  # the cell is running: its reply and the kernel are being polled
            assert not cell["task"].done()
        await asyncio.sleep(1.5)  # the kernel is gone; a poll still pending would have woken by now
        cell["ended"] = cell["task"].done()  # before asyncio.run cancels what is left

    asyncio.run(stopped_mid_cell())
    assert cell["ended"]  # ended with the kernel, its error read (nbclient's DeadKernelError)
    del cell["task"]
    gc.collect()
    assert unread == []


def test_a_kernel_killed_mid_fit_fails_the_job_in_one_line(tmp_path):
    proc = fitting_job(tmp_path)
    [kernel] = (Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
    os.kill(int(kernel), signal.SIGKILL)  # as the kernel's out-of-memory killer does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, err
    [row] = run_table(tmp_path)
    assert row.status == "failed" and (row.path / ".kernel.log").is_file() and (row.path / "train.ipynb").is_file()
    cells = json.loads((row.path / "train.ipynb").read_text())["cells"]
    [fit] = [c for c in cells if "fit(train_rows" in "".join(c["source"])]
    before = [c["execution_count"] or 0 for c in cells[:cells.index(fit)] if c["cell_type"] == "code"]
    number = fit["execution_count"] or max(before) + 1  # unset when the kernel died before acknowledging the cell
    assert f"kernel died in cell {number} (killed" in err and str(row.path) in err, err

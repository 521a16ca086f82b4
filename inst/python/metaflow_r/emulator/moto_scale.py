"""moto patches that wide foreaches need on the emulator: Map states of thousands of items, a DISTRIBUTED
Map that fails when a child execution fails, and Batch array jobs whose children run in the background.

Each patch fixes one defect of moto 5.2 (``tests/python/test_emulator_patches.py`` shows the defect
without it and the behaviour AWS documents with it):

* ``iterate_map_workers``: a Map worker evaluates its next item by recursing, so a worker that gets about
  1,000 items (an inline Map of 1,100 items at MaxConcurrency 1) dies of RecursionError and the execution
  never ends. The patched worker loops.
* ``fail_distributed_maps_over_tolerance``: a failed child execution of a DISTRIBUTED Map is counted but
  never fails the Map, whatever ToleratedFailureCount says (moto logs "declarations currently have no
  effect"). Patched, a Map Run with more failures than it tolerates fails with
  ``States.ExceedToleratedFailureThreshold``, after its remaining children ran (AWS stops earlier).
* ``snapshot_batch_jobs``: DescribeJobs iterates over every job while other requests add jobs, so under a
  few thousand concurrent tasks it fails with "dictionary changed size during iteration" (and the Step
  Functions task that asked fails with it). Patched, iterating the jobs takes a snapshot.
* ``reuse_service_clients``: every Task state and every ItemReader or ResultWriter makes a new boto3 client
  (tens of milliseconds of CPU: botocore loads the service's model each time), so a distributed Map of
  3,000 one-task children spends most of its minutes making clients. Patched, the clients of a service and
  region are made once and shared (boto3 clients are thread-safe).
* ``run_array_jobs_in_background``: ``SubmitJob`` with ``arrayProperties`` runs every child, one after
  another, inside the request; no child knows its ``AWS_BATCH_JOB_ARRAY_INDEX``; the children share one
  environment list that each describe appends to; and the parent is SUCCEEDED even when children failed.
  Patched, SubmitJob returns at once, children run on a small pool with their index set, and the parent
  stays RUNNING until all children ended, then SUCCEEDED, or FAILED if any child failed.
"""
from __future__ import annotations

import copy
import datetime
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
ARRAY_WORKERS_SETTING = "METAFLOW_R_EMULATOR_ARRAY_WORKERS"


def apply_scale_patches() -> None:
    """Every patch of this module (each is idempotent)."""
    iterate_map_workers()
    fail_distributed_maps_over_tolerance()
    snapshot_batch_jobs()
    reuse_service_clients()
    run_array_jobs_in_background()


def iterate_map_workers() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as distributed,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iteration_worker import (
        IterationWorker,
    )

    worker = distributed.DistributedItemProcessorWorker
    if getattr(IterationWorker, "_metaflow_r_iterates", False):
        return

    def pool(close: str, keep_source: bool):
        """moto's _eval_pool, its tail call turned into the next turn of a loop; inline workers close their
        frames (and keep the last event's id for the next state), distributed workers delete them."""
        def eval_pool(self, job, worker_frame) -> None:
            while job is not None:
                job_frame = worker_frame.open_inner_frame()
                self._eval_job(env=job_frame, job=job)
                getattr(worker_frame, close)(job_frame)
                if isinstance(job.job_output, Exception) or self.stopped():
                    break
                next_job = self._job_pool.next_job()
                if next_job is None:
                    if keep_source:
                        worker_frame.event_history_context.source_event_id = (
                            job_frame.event_history_context.last_published_event_id)
                    break
                self._job_pool.close_job(job)
                job = next_job
            getattr(self._env, close)(worker_frame)
            if job is not None:
                self._job_pool.close_job(job)
        return eval_pool

    IterationWorker._eval_pool = pool("close_frame", keep_source=True)
    worker._eval_pool = pool("delete_frame", keep_source=False)
    IterationWorker._metaflow_r_iterates = True


def fail_distributed_maps_over_tolerance() -> None:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as distributed,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    DistributedIterationComponent = distributed.DistributedIterationComponent
    if getattr(DistributedIterationComponent, "_metaflow_r_tolerates", False):
        return
    original = DistributedIterationComponent._map_run

    def map_run(self, env, eval_input) -> None:
        original(self, env, eval_input)
        record = eval_input.map_run_record
        failed = record.item_counter.failed.get() + record.item_counter.timed_out.get()
        total = max(record.item_counter.total.get(), 1)
        # Tolerated when within either threshold: ASL defaults both to 0, so a Map declaring neither (or
        # ToleratedFailureCount 0) fails on its first failed child, as on AWS.
        if failed > record.tolerated_failure_count and 100.0 * failed / total > record.tolerated_failure_percentage:
            error = StatesErrorNameType.StatesExceedToleratedFailureThreshold
            cause = (f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed "
                     f"(ToleratedFailureCount {record.tolerated_failure_count}).")
            raise FailureEventException(FailureEvent(
                env=env, error_name=StatesErrorName(typ=error), event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(executionFailedEventDetails=ExecutionFailedEventDetails(
                    error=error.to_name(), cause=cause))))

    DistributedIterationComponent._map_run = map_run
    DistributedIterationComponent._metaflow_r_tolerates = True


class _JobTable(dict):
    """Batch's jobs by id: iterating takes a snapshot, so a job added meanwhile by another thread does no harm."""

    def __iter__(self):
        return iter(list(super().keys()))

    def keys(self):
        return list(super().keys())

    def values(self):
        return list(super().values())

    def items(self):
        return list(super().items())


def snapshot_batch_jobs() -> None:
    from moto.batch.models import BatchBackend

    if getattr(BatchBackend, "_metaflow_r_snapshots", False):
        return
    original = BatchBackend.__init__

    def init(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self._jobs = _JobTable(self._jobs)

    BatchBackend.__init__ = init
    BatchBackend._metaflow_r_snapshots = True


# The interpreter's modules that make clients for the integrations compiled flows use.
CLIENT_MAKERS = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
)


def reuse_service_clients() -> None:
    import importlib

    from moto.core.models import botocore_stubber
    from moto.stepfunctions.parser.asl.utils import boto_client

    if getattr(boto_client, "_metaflow_r_reused", False):
        return
    make = boto_client.boto_client_for
    clients: dict[tuple[str, str, bool], Any] = {}

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        # The interpreter signs every request with the same fixed keys: the credentials do not change the client.
        key = (region, service, botocore_stubber.enabled)
        with _lock:
            if key not in clients:
                clients[key] = make(region=region, service=service, state_credentials=state_credentials)
            return clients[key]

    for name in CLIENT_MAKERS:
        importlib.import_module(name).boto_client_for = client_for
    boto_client._metaflow_r_reused = True


def _array_pool() -> ThreadPoolExecutor:
    """Children of every array job share one pool: the machine, like a compute environment, has a size."""
    global _pool
    with _lock:
        if _pool is None:
            workers = int(os.environ.get(ARRAY_WORKERS_SETTING) or max(2, os.cpu_count() or 2))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metaflow-r-array")
        return _pool


def run_array_jobs_in_background() -> None:
    from moto.batch_simple.models import BatchSimpleBackend

    if getattr(BatchSimpleBackend, "_metaflow_r_arrays", False):
        return
    original = BatchSimpleBackend.submit_job

    def submit_job(self, job_name, job_def_id, job_queue, array_properties, depends_on=None,
                   container_overrides=None, eks_properties_override=None, timeout=None, parameters=None,
                   tags=None):
        arguments = dict(job_name=job_name, depends_on=depends_on, container_overrides=container_overrides,
                         eks_properties_override=eks_properties_override, timeout=timeout, parameters=parameters)
        size = (array_properties or {}).get("size")
        if size is None:
            return original(self, job_name, job_def_id, job_queue, array_properties, depends_on,
                            container_overrides, eks_properties_override, timeout, parameters, tags)
        parent = _array_parent(self, job_def_id, job_queue, array_properties, tags, arguments)
        children = _array_children(self, parent, int(size), arguments)
        _run_in_background(self, parent, children)
        return job_name, parent.job_id, parent.arn

    BatchSimpleBackend.submit_job = submit_job
    BatchSimpleBackend._metaflow_r_arrays = True


def _array_parent(backend: Any, job_def_id: str, job_queue: str, array_properties: dict[str, Any],
                  tags: Any, arguments: dict[str, Any]) -> Any:
    """The array job itself, RUNNING until its children end (registered while the request runs)."""
    from moto.batch.exceptions import ClientException
    from moto.batch.models import Job

    job_def = backend.get_job_definition(job_def_id)
    if job_def is None:
        raise ClientException(f"Job definition {job_def_id} does not exist")
    queue = backend.get_job_queue(job_queue)
    if queue is None:
        raise ClientException(f"Job queue {job_queue} does not exist")
    parent = Job(arguments["job_name"], job_def, queue, backend, log_backend=backend.logs_backend,
                 container_overrides=arguments["container_overrides"],
                 eks_properties_override=arguments["eks_properties_override"], depends_on=arguments["depends_on"],
                 all_jobs=backend._jobs, timeout=arguments["timeout"], array_properties=array_properties,
                 parameters=arguments["parameters"], tags=tags)
    parent.job_started_at = datetime.datetime.now()
    with _lock:
        backend.backend._jobs[parent.job_id] = parent
    return parent


def _array_children(backend: Any, parent: Any, size: int, arguments: dict[str, Any]) -> list[Any]:
    """One job per index, each with its AWS_BATCH_JOB_ARRAY_INDEX in an environment of its own."""
    from moto.batch.models import Job

    children = []
    for index in range(size):
        overrides = copy.deepcopy(arguments["container_overrides"] or {})
        overrides.setdefault("environment", []).append({"name": "AWS_BATCH_JOB_ARRAY_INDEX", "value": str(index)})
        children.append(Job(arguments["job_name"], parent.job_definition, parent.job_queue, backend,
                            log_backend=backend.logs_backend, container_overrides=overrides,
                            eks_properties_override=arguments["eks_properties_override"],
                            depends_on=arguments["depends_on"], all_jobs=backend._jobs, timeout=arguments["timeout"],
                            array_properties={"statusSummary": {}, "index": index},
                            parameters=arguments["parameters"], provided_job_id=f"{parent.job_id}:{index}"))
    # Registered here, in the request, so that no later write changes the size of the dict that
    # DescribeJobs iterates over from other threads.
    with _lock:
        for child in children:
            backend.backend._jobs[child.job_id] = child
    parent._child_jobs = children
    return children


def _run_in_background(backend: Any, parent: Any, children: list[Any]) -> None:
    """The children on the shared pool; the parent ends when the last one does, FAILED if any failed."""
    remaining = [len(children)]

    def run(child: Any) -> None:
        try:
            backend._mark_job_as_finished(include_start_attempt=True, job=child)
        except Exception:  # noqa: BLE001 - a child that cannot run has failed, like on AWS
            child._mark_stopped(success=False)
        with _lock:
            remaining[0] -= 1
            done = remaining[0] == 0
        if done:
            parent._mark_stopped(success=all(c.status == "SUCCEEDED" for c in children))

    for child in children:
        _array_pool().submit(run, child)

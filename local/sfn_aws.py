"""Step Functions as AWS runs it: every place the local runtime makes moto's ASL engine stricter.

moto's engine (`moto.stepfunctions.parser`, moto 5.2.1, a port of LocalStack's) runs the shipped
ASL. Where it is more lenient than AWS, a test would pass locally on a path that behaves otherwise
in a real account, so these rules make it follow the AWS documentation:

1. **`States.ALL` does not match `States.Runtime` or `States.DataLimitExceeded`**, in a Catch or a
   Retry. `States.Runtime` is never retried or caught, not even by name: the execution fails at
   once and no failure path runs. `States.DataLimitExceeded` is caught (or retried) only by a
   catcher (retrier) that names it. moto matched both with `States.ALL`.
   AWS: "Handling errors in Step Functions workflows", error names `States.ALL` ("can't catch the
   States.DataLimitExceeded terminal error type and runtime error types"), `States.DataLimitExceeded`
   ("a terminal error that cannot be caught by the States.ALL error type") and `States.Runtime` ("isn't
   retriable, and will always cause the execution to fail. A retry or catch on States.ALL won't catch
   States.Runtime errors"): https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
2. **`SendTaskSuccess`, `SendTaskFailure` and `SendTaskHeartbeat` for a task that is no longer
   waiting answer `TaskTimedOut`**: its execution stopped, timed out, failed or succeeded, its state
   timed out, or the task was already answered (the first answer wins). A token no execution ever
   issued is `InvalidToken`. A heartbeat for a waiting task is accepted even without
   `HeartbeatSeconds`; `SendTaskSuccess` with output that is not JSON is `InvalidOutput`.
   moto accepted a failure for an ended execution, a second answer, and any answer after a stop,
   and answered `InvalidToken` for success or heartbeat to a stopped execution.
   AWS: API reference, `SendTaskSuccess` / `SendTaskFailure` / `SendTaskHeartbeat` errors:
   `TaskTimedOut` "The task token has either expired or the task associated with the token has
   already been closed"; `TaskDoesNotExist` is about activities
   (https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html).
3. **`StopExecution` ends the execution at once**: `DescribeExecution` says `ABORTED` as soon as
   the call returns, the state that was running (a task-token wait, a Lambda invocation, a retry
   back-off) does not continue to its Next, Retry or Catch, its task token is closed (rule 2), and
   nothing it still does (a Lambda call returning) is written after `ExecutionAborted` in the
   history. The `error` and `cause` given to StopExecution are kept. moto marked the execution stopped but
   left it `RUNNING` until the waiting state timed out, and then ran its Catch.
   AWS: API reference, StopExecution ("Stops an execution"; for a Standard workflow the execution
   is `ABORTED`): https://docs.aws.amazon.com/step-functions/latest/apireference/API_StopExecution.html
4. **A Fail state's `ErrorPath` and `CausePath` must select a string**; anything else (an object,
   a number, null) fails the execution with `States.Runtime` (a path that selects nothing already
   did). moto put whatever the path selected into the execution's error and cause. The text of
   the cause is ours; AWS's wording may differ. An ErrorPath that selects a `States.` name (a
   caught error rethrown, such as `States.DataLimitExceeded`) is that execution's error; moto
   failed such a Fail state with an internal error, reported as `States.Runtime`.
   AWS: "Fail workflow state", `CausePath` / `ErrorPath`: "the reference path must select a field
   that contains a string value": https://docs.aws.amazon.com/step-functions/latest/dg/state-fail.html
5. **`States.DataLimitExceeded` for a state's effective input over 256 KiB**: after `Parameters`
   is applied, a Task or Pass state whose input is larger than the payload quota fails with
   `States.DataLimitExceeded` (moto already checked a task's result and a state's output, not the
   input), and by rule 1 only a catcher naming the error catches it.
   AWS: error name `States.DataLimitExceeded` ("When, after Parameters processing, the input of a
   state is larger than the payload size quota"), and "Step Functions service quotas": 256 KiB
   as a UTF-8 encoded string: https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html

And two older fixes of moto's Step Functions, kept here so every difference lives in one place:

6. A new execution can start after one that waited for a task token: moto deep-copies the state
   machine (with all its executions) to start one, and a past callback execution holds a lock that
   cannot be copied. The copy only needs the definition.
7. `SendTaskFailure` keeps its `cause` (moto's request handler dropped it, so a Catch saw only the
   error name).

And what moto does not do at all:

8. **An ended execution is an EventBridge event**: `Step Functions Execution Status Change` with its
   status (SUCCEEDED, FAILED, TIMED_OUT, ABORTED), delivered once per execution to every function in
   `status_listeners` (the emulation gives it to its EventBridge). moto sends none.
   AWS: "Automating Step Functions event delivery with EventBridge", execution status change events:
   https://docs.aws.amazon.com/step-functions/latest/dg/eventbridge-integration.html

`install()` patches moto's classes and `uninstall()` puts them back; both are idempotent. The
local runtime calls them from `local.emulation.Emulation.install` / `uninstall`.
"""

from __future__ import annotations

import copy
import datetime
import json
import threading
from collections.abc import Callable
from typing import Any, cast

from moto.core.responses import ActionResult, EmptyResult
from moto.stepfunctions.models import StateMachine
from moto.stepfunctions.parser.api import (
    ExecutionStatus,
    HistoryEventType,
    InvalidOutput,
    InvalidToken,
    TaskFailedEventDetails,
    TaskTimedOut,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent, FailureEventException
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.common.parargs import Parargs
from moto.stepfunctions.parser.asl.component.common.retry.max_attempts_decl import MaxAttemptsOutcome
from moto.stepfunctions.parser.asl.component.common.retry.retrier_decl import RetrierDecl
from moto.stepfunctions.parser.asl.component.common.retry.retrier_outcome import RetrierOutcome
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import EvalTimeoutError
from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
from moto.stepfunctions.parser.asl.component.state.fail.cause_decl import CausePath
from moto.stepfunctions.parser.asl.component.state.fail.error_decl import ErrorPath
from moto.stepfunctions.parser.asl.component.state.fail.state_fail import StateFail
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackEndpoint,
    CallbackOutcomeFailure,
    CallbackOutcomeSuccess,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.parser.quotas import is_within_size_quota
from moto.stepfunctions.parser.utils import TMP_THREADS
from moto.stepfunctions.responses import StepFunctionResponse

_MISSING = object()
_saved: list[tuple[type, str, Any]] = []
#: SendTask* check that a task is open and answer it under this lock: the first answer wins.
_tasks_lock = threading.Lock()

RUNTIME = StatesErrorNameType.StatesRuntime.to_name()
DATA_LIMIT = StatesErrorNameType.StatesStatesDataLimitExceeded.to_name()


def install() -> None:
    """Patch moto's Step Functions classes; a patch already in place is left as it is (idempotent)."""
    for target, name, value in _PATCHES:
        current = target.__dict__.get(name, _MISSING)
        if current is not value:
            _saved.append((target, name, current))
            setattr(target, name, value)


def uninstall() -> None:
    """Put moto's Step Functions classes back as they were (no-op when not installed)."""
    while _saved:
        target, name, original = _saved.pop()
        if original is _MISSING:
            if name in target.__dict__:
                delattr(target, name)
        else:
            setattr(target, name, original)


# --- rule 1: States.ALL does not match States.Runtime / States.DataLimitExceeded ------------------
_original_error_equals = ErrorEqualsDecl._eval_body


def _error_equals(self: ErrorEqualsDecl, env: Environment) -> None:
    error_name = env.stack[-1]
    name = getattr(error_name, "error_name", None)
    if name == RUNTIME:  # never retried, never caught
        env.stack.pop()
        env.stack.append(False)
    elif name == DATA_LIMIT:  # only by name
        env.stack.pop()
        env.stack.append(any(getattr(candidate, "error_name", None) == DATA_LIMIT for candidate in self.error_names))
    else:
        _original_error_equals(self, env)


# --- rule 2: SendTask* for a task no longer waiting -> TaskTimedOut -------------------------------
def _closed(endpoint: CallbackEndpoint) -> bool:
    return bool(getattr(endpoint, "sfn_aws_closed", False)) or endpoint.get_outcome() is not None \
        or endpoint.consumer_error is not None


def _close(endpoint: CallbackEndpoint) -> None:
    endpoint.sfn_aws_closed = True  # type: ignore[attr-defined]


_original_interrupt_all = CallbackEndpoint.interrupt_all


def _interrupt_all(self: CallbackEndpoint) -> None:
    # moto calls this when a task stops waiting for its token (answered, timed out, failed).
    _close(self)
    _original_interrupt_all(self)


def _waiting_task(backend: StepFunctionsParserBackend, task_token: str) -> CallbackEndpoint:
    """The endpoint of the task `task_token` names, if it still waits; TaskTimedOut or InvalidToken otherwise."""
    for execution in backend._get_executions():
        env = execution.exec_worker.env if execution.exec_worker is not None else None
        endpoint: CallbackEndpoint | None = env.callback_pool_manager.get(task_token) if env is not None else None
        if endpoint is None:
            continue
        if execution.exec_status != ExecutionStatus.RUNNING or _closed(endpoint):
            raise TaskTimedOut("Task Timed Out: the task was already closed (answered, timed out, or its execution ended)",
                               "TaskTimedOut")
        return endpoint
    raise InvalidToken  # no execution issued it


def _send_task_success(self: StepFunctionsParserBackend, task_token: str, outcome: str) -> None:
    try:
        json.loads(outcome)
    except (TypeError, ValueError) as exc:
        raise InvalidOutput("Invalid Output: the output is not JSON", "InvalidOutput") from exc
    with _tasks_lock:
        _waiting_task(self, task_token).notify(CallbackOutcomeSuccess(callback_id=task_token, output=outcome))


def _send_task_failure(self: StepFunctionsParserBackend, task_token: str, error: str | None = None,
                       cause: str | None = None) -> None:
    with _tasks_lock:
        _waiting_task(self, task_token).notify(CallbackOutcomeFailure(callback_id=task_token, error=error, cause=cause))


def _send_task_heartbeat(self: StepFunctionsParserBackend, task_token: str) -> None:
    with _tasks_lock:
        _waiting_task(self, task_token).notify_heartbeat()


# --- rule 3: StopExecution aborts at once ---------------------------------------------------------
def _wake_on_stop(env: Environment, event: threading.Event) -> None:
    env.__dict__.setdefault("sfn_aws_wakeups", set()).add(event)


def _forget_wakeup(env: Environment, event: threading.Event) -> None:
    env.__dict__.get("sfn_aws_wakeups", set()).discard(event)


_original_set_stop = Environment.set_stop


class _Discarded(EventManager):
    """Where a stopped execution's orphaned work (a Lambda call still returning) writes its events: nowhere.
    On AWS nothing follows ExecutionAborted in the history."""

    def add_event(self, *args: Any, **kwargs: Any) -> int:
        return 0


def _set_stop(self: Environment, stop_date: Any, cause: str | None, error: str | None) -> None:
    _original_set_stop(self, stop_date=stop_date, cause=cause, error=error)  # also stops every frame
    if isinstance(self._program_state, ProgramStopped):
        if self.is_frame():
            self.event_manager = _Discarded(cloud_watch_logging_session=None)
        for event in list(self.__dict__.get("sfn_aws_wakeups", ())):
            event.set()


def _stop_execution(self: StepFunctionsParserBackend, execution_arn: str, error: str | None = None,
                    cause: str | None = None) -> Execution:
    execution: Execution = cast("Execution", self.describe_execution(execution_arn))
    env = execution.exec_worker.env if execution.exec_worker is not None else None
    if env is None or execution.exec_status != ExecutionStatus.RUNNING:
        return execution
    stop_date = datetime.datetime.now(tz=datetime.UTC)
    with _tasks_lock:
        env.set_stop(stop_date=stop_date, cause=cause, error=error)
        if not isinstance(env.program_state(), ProgramStopped):
            return execution  # it ended on its own just before
        execution.exec_status = ExecutionStatus.ABORTED
        execution.stop_date = stop_date
        execution.error, execution.cause = error, cause
        for endpoint in list(env.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()  # closes the task (rule 2) and wakes its waiting thread
    return execution


_original_reflect: Callable[[BaseExecutionWorkerCommunication], None] = BaseExecutionWorkerCommunication._reflect_execution_status


def _reflect_execution_status(self: BaseExecutionWorkerCommunication) -> None:
    # The program ends a moment after StopExecution returned: keep the stop as StopExecution said it.
    execution = self.execution
    stopped = (execution.stop_date, execution.error, execution.cause) if execution.exec_status == ExecutionStatus.ABORTED else None
    _original_reflect(self)
    if stopped is not None and execution.exec_status == ExecutionStatus.ABORTED:
        execution.stop_date, execution.error, execution.cause = stopped


def _evaluate_with_timeout(self: ExecutionState, env: Environment) -> None:  # noqa: PLR0915 - moto's method kept line for line, to diff against upstream
    """moto 5.2.1's ExecutionState._evaluate_with_timeout, except that a stop ends the wait at once and
    whatever the state then returns is dropped (no Next, Retry or Catch runs for it)."""
    self.timeout.eval(env=env)
    timeout_seconds: int = env.stack.pop()

    frame: Environment = env.open_frame()
    frame.states.reset(input_value=env.states.get_input())
    frame.stack = copy.deepcopy(env.stack)
    execution_outputs: list[Any] = []
    execution_exceptions: list[Exception | None] = [None]
    terminated_event = threading.Event()

    def _exec_and_notify() -> None:
        try:
            self._eval_execution(frame)
            execution_outputs.extend(frame.stack)
        except Exception as ex:
            execution_exceptions.append(ex)
        terminated_event.set()

    _wake_on_stop(env, terminated_event)
    try:
        if env.is_running():
            thread = threading.Thread(target=_exec_and_notify, daemon=True)
            TMP_THREADS.append(thread)
            thread.start()
            finished_on_time: bool = terminated_event.wait(timeout_seconds)
        else:
            finished_on_time = False
    finally:
        _forget_wakeup(env, terminated_event)
    frame.set_ended()
    env.close_frame(frame)

    if not env.is_running():  # stopped meanwhile: the state's outcome goes nowhere
        return

    execution_exception = execution_exceptions.pop()
    if execution_exception:
        raise execution_exception

    if not finished_on_time:
        # The state timed out: its task token is closed now, not when the waiting thread notices.
        task: dict[str, Any] = dict(env.states.context_object.context_object_data.get("Task") or {})
        endpoint = env.callback_pool_manager.get(task["Token"]) if task.get("Token") else None
        if endpoint is not None:
            endpoint.interrupt_all()
        raise EvalTimeoutError

    execution_output = execution_outputs.pop()
    env.stack.append(execution_output)

    if not self._is_language_query_jsonpath():
        env.states.set_result(execution_output)

    if self.assign_decl:
        self.assign_decl.eval(env=env)

    if self.result_selector:
        self.result_selector.eval(env=env)

    if self.result_path:
        self.result_path.eval(env)
    else:
        res = env.stack.pop()
        env.states.reset(input_value=res)


def _retrier_eval_body(self: RetrierDecl, env: Environment) -> None:
    """moto 5.2.1's RetrierDecl._eval_body, with a back-off that a stop ends at once."""
    self.error_equals.eval(env)
    res: bool = env.stack.pop()
    if not res:
        env.stack.append(RetrierOutcome.Skipped)
        return

    self.max_attempts.eval(env=env)
    max_attempts_outcome = env.stack.pop()
    if max_attempts_outcome == MaxAttemptsOutcome.EXHAUSTED:
        env.stack.append(RetrierOutcome.Failed)
        return

    self.interval_seconds.eval(env=env)
    self.backoff_rate.eval(env=env)
    self.max_delay_seconds.eval(env=env)
    self.jitter_strategy.eval(env=env)

    interval_seconds: float = env.stack.pop()
    woken = threading.Event()
    _wake_on_stop(env, woken)
    try:
        if env.is_running():
            woken.wait(interval_seconds)
    finally:
        _forget_wakeup(env, woken)

    env.stack.append(RetrierOutcome.Executed)


def _stop_execution_response(self: StepFunctionResponse) -> ActionResult:
    arn = self._get_param("executionArn")
    backend = self.stepfunction_backend
    if isinstance(backend, StepFunctionsParserBackend):
        execution = cast("Any", backend).stop_execution(arn, error=self._get_param("error"), cause=self._get_param("cause"))
    else:
        execution = backend.stop_execution(arn)
    return ActionResult({"stopDate": execution.stop_date})


# --- rule 4: a Fail state's ErrorPath / CausePath must select a string ----------------------------
def _task_failed(details: TaskFailedEventDetails) -> EventDetails:
    return cast("EventDetails", {"taskFailedEventDetails": details})


def _runtime_failure(env: Environment, cause: str) -> FailureEventException:
    return FailureEventException(failure_event=FailureEvent(
        env=env,
        error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
        event_type=HistoryEventType.TaskFailed,
        event_details=_task_failed(TaskFailedEventDetails(error=RUNTIME, cause=cause)),
    ))


def _fail_field(env: Environment, field: str, declaration: Any) -> str:
    declaration.eval(env=env)
    value = env.stack.pop()
    if not isinstance(value, str):
        source = getattr(getattr(declaration, "string_expression", None), "literal_value", "")
        raise _runtime_failure(
            env, f"The {field} '{source}' of the Fail state must select a string, but it selected {to_json_str(value)[:200]}")
    return value


class _FailStateErrorName(ErrorName):
    """The error a Fail state reports, as its Error or ErrorPath gave it: a `States.` name too (an error
    caught earlier and rethrown; moto's CustomErrorName refused those with an internal error)."""


def _fail_eval_state(self: StateFail, env: Environment) -> None:
    details = TaskFailedEventDetails()
    error_value = None
    if self.error:
        error_value = _fail_field(env, "ErrorPath" if isinstance(self.error, ErrorPath) else "Error", self.error)
        details["error"] = error_value
    if self.cause:
        details["cause"] = _fail_field(env, "CausePath" if isinstance(self.cause, CausePath) else "Cause", self.cause)
    raise FailureEventException(failure_event=FailureEvent(
        env=env,
        error_name=_FailStateErrorName(error_value) if error_value else None,
        event_type=HistoryEventType.TaskFailed,
        event_details=_task_failed(details),
    ))


# --- rule 5: a state's input after Parameters over 256 KiB -> States.DataLimitExceeded ------------
_original_parargs = Parargs._eval_body


def _parargs_eval_body(self: Parargs, env: Environment) -> None:
    _original_parargs(self, env)
    if not is_within_size_quota(env.stack[-1]):
        raise FailureEventException(failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded),
            event_type=HistoryEventType.TaskFailed,
            event_details=_task_failed(TaskFailedEventDetails(
                error=DATA_LIMIT,
                cause=f"The state '{env.next_state_name}' has an input (after Parameters) larger than the "
                      "maximum number of bytes service limit (256 KiB).",
            )),
        ))


# --- 6 and 7: older fixes -------------------------------------------------------------------------
def _deepcopy_without_executions(self: Any, memo: dict[int, Any]) -> Any:
    clone = object.__new__(type(self))
    memo[id(self)] = clone
    for key, value in self.__dict__.items():
        setattr(clone, key, [] if key == "executions" else copy.deepcopy(value, memo))
    return clone


def _send_task_failure_response(self: StepFunctionResponse) -> Any:
    backend: Any = self.stepfunction_backend
    backend.send_task_failure(self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause"))
    return EmptyResult()


# --- 8: an ended execution is a status-change event ------------------------------------------------
#: Called once with each execution that ended (any status), after its status is final.
status_listeners: list[Callable[[Execution], None]] = []
_original_terminated = BaseExecutionWorkerCommunication.terminated


def _terminated(self: BaseExecutionWorkerCommunication) -> None:
    _original_terminated(self)
    execution = self.execution
    if getattr(execution, "sfn_aws_status_sent", False):
        return
    execution.sfn_aws_status_sent = True  # type: ignore[attr-defined]
    for listener in status_listeners:
        listener(execution)


_PATCHES: list[tuple[type, str, Callable[..., Any]]] = [
    (ErrorEqualsDecl, "_eval_body", _error_equals),
    (CallbackEndpoint, "interrupt_all", _interrupt_all),
    (StepFunctionsParserBackend, "send_task_success", _send_task_success),
    (StepFunctionsParserBackend, "send_task_failure", _send_task_failure),
    (StepFunctionsParserBackend, "send_task_heartbeat", _send_task_heartbeat),
    (Environment, "set_stop", _set_stop),
    (StepFunctionsParserBackend, "stop_execution", _stop_execution),
    (BaseExecutionWorkerCommunication, "_reflect_execution_status", _reflect_execution_status),
    (ExecutionState, "_evaluate_with_timeout", _evaluate_with_timeout),
    (RetrierDecl, "_eval_body", _retrier_eval_body),
    (StepFunctionResponse, "stop_execution", _stop_execution_response),
    (StateFail, "_eval_state", _fail_eval_state),
    (Parargs, "_eval_body", _parargs_eval_body),
    (StateMachine, "__deepcopy__", _deepcopy_without_executions),
    (StepFunctionResponse, "send_task_failure", _send_task_failure_response),
    (BaseExecutionWorkerCommunication, "terminated", _terminated),
]

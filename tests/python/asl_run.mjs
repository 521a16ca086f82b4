// Runs state machine definitions on the npm interpreter aws-local-stepfunctions, an implementation of
// the Amazon States Language independent of moto's, with Batch and DynamoDB stubbed (test_asl_interpreter.py).
//
//   node asl_run.mjs <path of aws-local-stepfunctions' ESM build>  < requests.json  > results.json
//
// Each request: {definition, name, input, widths: {foreach step: width}, fail: {step: split_path},
// throttle: {step: times}}. Each result: {status, error, output, jobs: [{step, env, started, finished}],
// peak: {"<step>|<parent split path>": most jobs of that step in flight at once}}.
import { readFileSync } from "node:fs";

// aws-local-stepfunctions 3.0.0 calls Promise.withResolvers, which Node.js has only from version 22.
if (!Promise.withResolvers) {
  Promise.withResolvers = () => {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}

const { StateMachine } = await import(process.argv[2]);
const BATCH = "arn:aws:states:::batch:submitJob.sync";
const DYNAMODB = "arn:aws:states:::dynamodb:getItem";
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function taskStates(states, found = {}) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === "Task") found[name] = state;
    for (const branch of state.Branches ?? []) taskStates(branch.States, found);
    if (state.ItemProcessor) taskStates(state.ItemProcessor.States, found);
  }
  return found;
}

function namedError(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

async function run(request) {
  const { definition, name, input, widths = {}, fail = {}, throttle = {} } = request;
  const jobs = [];
  const inFlight = {};
  const peak = {};
  let clock = 0;
  const handlers = {};
  const retryIntervalOverrides = {};
  for (const [stateName, state] of Object.entries(taskStates(definition.States))) {
    retryIntervalOverrides[stateName] = 0;
    if (state.Resource === DYNAMODB) {
      handlers[stateName] = async (params) => {
        const step = params.Key.pathspec.S.split("/")[1];
        const width = widths[step] ?? 0;
        return { Item: { for_each_cardinality: { L: Array.from({ length: width }, (_, i) => ({ S: `item ${i}` })) } } };
      };
    } else if (state.Resource === BATCH) {
      handlers[stateName] = async (params) => {
        const env = Object.fromEntries(params.ContainerOverrides.Environment.map((e) => [e.Name, e.Value]));
        const step = env.METAFLOW_STEP;
        if ((throttle[step] ?? 0) > 0) {
          throttle[step] -= 1;
          throw namedError("Batch.AWSBatchException", "Too many requests (stub)");
        }
        const path = env.METAFLOW_SPLIT_PATH;
        const key = `${step}|${path.split("-").slice(0, -1).join("-")}`;
        const job = { step, env, jobName: params.JobName, jobDefinition: params.JobDefinition,
                      jobQueue: params.JobQueue, started: ++clock };
        inFlight[key] = (inFlight[key] ?? 0) + 1;
        peak[key] = Math.max(peak[key] ?? 0, inFlight[key]);
        await sleep(5);
        inFlight[key] -= 1;
        job.finished = ++clock;
        jobs.push(job);
        if (fail[step] !== undefined && fail[step] === path) {
          throw namedError("States.TaskFailed", `Essential container in task exited (stub: ${step} ${path})`);
        }
        return { JobId: `job-${jobs.length}`, Status: "SUCCEEDED" };
      };
    } else {
      throw new Error(`${stateName}: no stub for ${state.Resource}`);
    }
  }
  const machine = new StateMachine(definition);
  const execution = machine.run(input, {
    overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides },
    context: { Execution: { Name: name, Input: input, StartTime: new Date(0).toISOString() } },
  });
  try {
    const output = await execution.result;
    return { status: "SUCCEEDED", output, jobs, peak };
  } catch (error) {
    const reason = error.cause ?? error; // the execution's error wraps the state's
    return { status: "FAILED", error: reason.name, cause: reason.message, jobs, peak };
  }
}

const requests = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const request of requests) results.push(await run(request));
process.stdout.write(JSON.stringify(results));

// Runs state machine definitions on the npm interpreter aws-local-stepfunctions, an implementation of
// the Amazon States Language independent of moto's, with Batch, DynamoDB and S3 stubbed
// (test_asl_interpreter.py).
//
//   node asl_run.mjs <path of aws-local-stepfunctions' ESM build>  < requests.json  > results.json
//
// Each request: {definition, name, input, datastore: "s3://bucket/prefix", widths: {foreach step: width},
// chunks: {foreach step: [{offset, size}]}, fail: {step: split_path}, throttle: {step: times}}.
// Each result: {status, error, output, jobs: [{step, env, path, array, started, finished}],
// peak: {"<step>|<parent split path>": most jobs of that step in flight at once}, s3: {url: body}}.
// A request's s3 ({url: body}) is there before the execution starts (a status a task already wrote).
//
// A foreach job publishes its items as sfn_task.py does: a DynamoDB item (cardinality and array chunks)
// and the S3 JSON a distributed Map reads. An array job of size n stands for its n children, each with
// the split path its AWS_BATCH_JOB_ARRAY_INDEX gives. The interpreter has no ItemReader, so a Map that
// reads its items from S3 becomes an s3:getObject Task (the ItemReader's own Parameters, evaluated by the
// interpreter) followed by the Map over what it read.
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
const S3_GET = "arn:aws:states:::s3:getObject";
const S3_SDK_PUT = "arn:aws:states:::aws-sdk:s3:putObject";
const READ_ITEMS = "$.__items_read";
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function taskStates(states, found = {}) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === "Task") found[name] = state;
    for (const branch of state.Branches ?? []) taskStates(branch.States, found);
    if (state.ItemProcessor) taskStates(state.ItemProcessor.States, found);
  }
  return found;
}

function readItemsFirst(states) {
  for (const [name, state] of Object.entries(states)) {
    for (const branch of state.Branches ?? []) readItemsFirst(branch.States);
    if (!state.ItemProcessor) continue;
    readItemsFirst(state.ItemProcessor.States);
    if (!state.ItemReader) continue;
    const { ItemReader, ResultWriter, ...map } = state;
    const mapName = `${name} over its items`;
    states[mapName] = { ...map, ItemsPath: READ_ITEMS,
                        ItemProcessor: { ...map.ItemProcessor, ProcessorConfig: { Mode: "INLINE" } } };
    states[name] = { Type: "Task", Resource: ItemReader.Resource, Parameters: ItemReader.Parameters,
                     ResultPath: READ_ITEMS, Next: mapName };
  }
  return states;
}

function splitPath(env, arrayIndex) {
  const path = env.METAFLOW_SPLIT_PATH;
  if (!path.includes("+")) return path;
  const cut = path.lastIndexOf("+");
  return `${path.slice(0, cut)}${Number(path.slice(cut + 1)) + arrayIndex}`;
}

function namedError(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

async function run(request) {
  const { name, input, datastore, widths = {}, chunks = {}, fail = {}, throttle = {} } = request;
  const definition = { ...request.definition, States: readItemsFirst(structuredClone(request.definition.States)) };
  const jobs = [];
  const dynamodb = {};
  const s3 = { ...(request.s3 ?? {}) };
  const inFlight = {};
  const peak = {};
  let clock = 0;
  const handlers = {};
  const retryIntervalOverrides = {};
  for (const [stateName, state] of Object.entries(taskStates(definition.States))) {
    retryIntervalOverrides[stateName] = 0;
    if (state.Resource === DYNAMODB) {
      handlers[stateName] = async (params) => {
        const item = dynamodb[params.Key.pathspec.S];
        if (!item) throw namedError("DynamoDB.ResourceNotFoundException", `no item ${params.Key.pathspec.S}`);
        return { Item: item };
      };
    } else if (state.Resource === S3_GET) {
      handlers[stateName] = async (params) => {
        const body = s3[`s3://${params.Bucket}/${params.Key}`];
        if (body === undefined) throw namedError("S3.NoSuchKey", `no object s3://${params.Bucket}/${params.Key}`);
        return JSON.parse(body);
      };
    } else if (state.Resource === S3_SDK_PUT) {
      handlers[stateName] = async (params) => {
        const url = `s3://${params.Bucket}/${params.Key}`;
        s3[url] = params.Body;
        return { ETag: `"${url.length}"` };
      };
    } else if (state.Resource === BATCH) {
      handlers[stateName] = async (params) => {
        const env = Object.fromEntries(params.ContainerOverrides.Environment.map((e) => [e.Name, e.Value]));
        const step = env.METAFLOW_STEP;
        if ((throttle[step] ?? 0) > 0) {
          throttle[step] -= 1;
          throw namedError("Batch.AWSBatchException", "Too many requests (stub)");
        }
        const size = params.ArrayProperties?.Size;
        const children = Array.from({ length: size ?? 1 }, (_, i) => ({
          step, env, path: splitPath(env, i), array: size !== undefined, jobName: params.JobName,
          jobDefinition: params.JobDefinition, jobQueue: params.JobQueue }));
        const started = ++clock;
        for (const job of children) {
          const key = `${step}|${job.path.split("-").slice(0, -1).join("-")}`;
          job.started = started;
          inFlight[key] = (inFlight[key] ?? 0) + 1;
          peak[key] = Math.max(peak[key] ?? 0, inFlight[key]);
        }
        await sleep(5);
        const finished = ++clock;
        for (const job of children) {
          inFlight[`${step}|${job.path.split("-").slice(0, -1).join("-")}`] -= 1;
          job.finished = finished;
          jobs.push(job);
          if (widths[step] !== undefined) publish(job);
        }
        const failed = children.find((job) => fail[step] === job.path);
        if (failed) {
          throw namedError("States.TaskFailed", `Essential container in task exited (stub: ${step} ${failed.path})`);
        }
        return { JobId: `job-${jobs.length}`, Status: "SUCCEEDED" };
      };
    } else {
      throw new Error(`${stateName}: no stub for ${state.Resource}`);
    }
  }
  function publish(job) {
    const width = widths[job.step];
    const pathspec = `${job.env.METAFLOW_RUN_ID}/${job.step}/${job.step}${job.path ? `-${job.path}` : ""}`;
    dynamodb[pathspec] = {
      for_each_cardinality: { L: Array.from({ length: width }, (_, i) => ({ N: String(i) })) },
      foreach_chunks: { S: JSON.stringify(chunks[job.step] ?? []) },
    };
    if (job.env.METAFLOW_FOREACH_ITEMS_KEY) {
      s3[`${datastore}/${job.env.METAFLOW_FOREACH_ITEMS_KEY}`] = JSON.stringify(Array.from({ length: width }, (_, i) => i));
    }
  }

  const machine = new StateMachine(definition);
  const execution = machine.run(input, {
    overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides },
    // The interpreter keeps no clock of its own for the context object: a fixed time stands for both.
    context: { Execution: { Name: name, Input: input, StartTime: new Date(0).toISOString() },
               State: { EnteredTime: new Date(0).toISOString() } },
  });
  try {
    const output = await execution.result;
    return { status: "SUCCEEDED", output, jobs, peak, s3 };
  } catch (error) {
    const reason = error.cause ?? error; // the execution's error wraps the state's
    return { status: "FAILED", error: reason.name, cause: reason.message, jobs, peak, s3 };
  }
}

const requests = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const request of requests) results.push(await run(request));
process.stdout.write(JSON.stringify(results));

import { serveWorker } from "../../../src/workers/worker-host.js";

// A worker for the WorkerPool tests: answers with the key set it holds, dies or spins on request.

export type TestJob = { op: "echo"; value: string } | { op: "die" } | { op: "spin"; ms: number };

let tag = "none";
serveWorker<{ tag: string }, TestJob, string>({
  keys(keys) {
    tag = keys.tag;
  },
  run(job) {
    if (job.op === "die") process.exit(3);
    if (job.op === "spin") {
      const until = Date.now() + job.ms;
      while (Date.now() < until);
      return { value: `${tag}:spun` };
    }
    return { value: `${tag}:${job.value}` };
  },
  close() {
    tag = "closed";
  },
});

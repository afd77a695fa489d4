// BullMQ on the Redis at 127.0.0.1:6379: add N no-op jobs, then a worker with the given
// concurrency processes them. Prints {"jobs", "concurrency", "addedPerSec", "processedPerSec"}.
//   node bench.mjs 20000 10
import { Queue, Worker } from 'bullmq';

const jobs = Number(process.argv[2] ?? 20000);
const concurrency = Number(process.argv[3] ?? 10);
const connection = { host: '127.0.0.1', port: 6379 };
const name = `pods-bench-bullmq-${process.pid}`;

const queue = new Queue(name, { connection });
await queue.obliterate({ force: true }).catch(() => {});
let started = performance.now();
for (let i = 0; i < jobs; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(i + 1000, jobs); j++) batch.push({ name: 'noop', data: { i: j } });
  await queue.addBulk(batch);
}
const addedPerSec = jobs / ((performance.now() - started) / 1000);

let done = 0;
started = performance.now();
const finished = new Promise((resolve) => {
  const worker = new Worker(name, async () => {}, {
    connection,
    concurrency,
    removeOnComplete: { count: 0 },
  });
  worker.on('completed', async () => {
    done += 1;
    if (done === jobs) {
      resolve();
      await worker.close();
    }
  });
});
await finished;
const processedPerSec = jobs / ((performance.now() - started) / 1000);
await queue.obliterate({ force: true }).catch(() => {});
await queue.close();
console.log(JSON.stringify({ jobs, concurrency, addedPerSec, processedPerSec }));
process.exit(0);

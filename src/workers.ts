/**
 * `selectBlocks({ workers: N })`: the probe jobs of each round run in N worker
 * processes on this machine, each with its own engine. On CUDA every worker sees one
 * GPU (CUDA_VISIBLE_DEVICES: the i-th of the parent's list, or device i); on CPU the
 * threads are split between the workers. A job's result is a pure function of the job
 * (probing.ts), so the selection is the same as in one process.
 *
 * Workers are started on the first round and stopped (by their PIDs) when the selection
 * ends, fails or is aborted.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

import { ErrorCodes, HopscotchError, fromNative } from './errors.js';
import type { ProbeContext, ProbeExecutor, ProbeJob, ProbeOutcome } from './probing.js';
import type { SelectOptions } from './select-options.js';
import type { Selection } from './select.js';
import { runSelection } from './select.js';
import type { Dataset, Model, Sample } from './types.js';

/** Messages from the parent to a worker. */
export type WorkerRequest =
  | { type: 'init'; modelDir: string; device: 'cpu' | 'cuda'; threads?: number; fingerprint: string; data: Sample[]; validation: Sample[] | null }
  | { type: 'job'; id: number; ctx: ProbeContext; job: ProbeJob };

/** Messages from a worker to the parent. */
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'outcome'; id: number; outcome: ProbeOutcome }
  | { type: 'error'; id: number | null; code: string; message: string };

/** The worker's entry file (the compiled one when running from the sources). */
function workerEntry(): string {
  const here = fileURLToPath(new URL('./probe-worker.js', import.meta.url));
  if (existsSync(here)) return here;
  const dist = fileURLToPath(new URL('../dist/probe-worker.js', import.meta.url));
  if (existsSync(dist)) return dist;
  throw new HopscotchError(ErrorCodes.INTERNAL, `cannot find the probe worker (${here}); build the TypeScript first (npm run build:ts)`);
}

interface Worker {
  child: ChildProcess;
  index: number;
  ready: Promise<void>;
  pending: Map<number, { resolve: (o: ProbeOutcome) => void; reject: (e: Error) => void }>;
}

/** A pool of N probe workers for one model and one ranking data set. */
export class WorkerPool {
  private workers: Worker[] = [];
  private nextId = 0;
  private failure: Error | null = null;

  constructor(
    private readonly model: Model,
    private readonly data: readonly Sample[],
    private readonly validation: readonly Sample[] | undefined,
    private readonly size: number,
  ) {}

  private start(): void {
    if (this.workers.length > 0) return;
    const entry = workerEntry();
    const cuda = this.model.device === 'cuda';
    const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',').filter((s) => s.trim() !== '');
    const threads = cuda ? undefined : Math.max(1, Math.floor(availableParallelism() / this.size));
    for (let i = 0; i < this.size; i++) {
      const env = { ...process.env };
      if (cuda) env.CUDA_VISIBLE_DEVICES = visible && visible.length > 0 ? visible[i % visible.length] : String(i);
      const child = fork(entry, [], { env, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const w: Worker = { child, index: i, ready: Promise.resolve(), pending: new Map() };
      w.ready = new Promise<void>((resolve, reject) => {
        const fail = (err: Error) => {
          this.failure ??= err;
          reject(err);
          for (const p of w.pending.values()) p.reject(err);
          w.pending.clear();
        };
        child.on('message', (m: WorkerReply) => {
          if (m.type === 'ready') resolve();
          else if (m.type === 'outcome') {
            w.pending.get(m.id)?.resolve(m.outcome);
            w.pending.delete(m.id);
          } else {
            const err = fromNative({ code: m.code, message: `probe worker ${i}: ${m.message}` });
            if (m.id === null) fail(err);
            else {
              w.pending.get(m.id)?.reject(err);
              w.pending.delete(m.id);
            }
          }
        });
        child.on('exit', (code, sig) => fail(new HopscotchError(ErrorCodes.INTERNAL, `probe worker ${i} (pid ${child.pid}) exited (${sig ?? code})`)));
        child.on('error', (err) => fail(new HopscotchError(ErrorCodes.INTERNAL, `probe worker ${i}: ${err.message}`, { cause: err })));
      });
      w.ready.catch(() => {});
      const init: WorkerRequest = {
        type: 'init',
        modelDir: this.model.dir,
        device: this.model.device,
        threads,
        fingerprint: this.model.fingerprint,
        data: [...this.data],
        validation: this.validation ? [...this.validation] : null,
      };
      child.send(init);
      this.workers.push(w);
    }
  }

  private async runOn(w: Worker, ctx: ProbeContext, job: ProbeJob): Promise<ProbeOutcome> {
    await w.ready;
    const id = this.nextId++;
    return new Promise<ProbeOutcome>((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      const req: WorkerRequest = { type: 'job', id, ctx, job };
      w.child.send(req);
    });
  }

  /** The executor: jobs handed to idle workers in order; outcomes recorded one at a time. */
  executor(): ProbeExecutor {
    return {
      run: async (ctx, jobs, rt, record) => {
        this.start();
        let next = 0;
        let chain = Promise.resolve();
        const onAbort = () => this.close();
        rt.signal?.addEventListener('abort', onAbort, { once: true });
        try {
          await Promise.all(
            this.workers.map(async (w) => {
              while (next < jobs.length) {
                if (rt.signal?.aborted) throw rt.signal.reason ?? new HopscotchError(ErrorCodes.ABORTED, 'the operation was aborted');
                if (this.failure) throw this.failure;
                const job = jobs[next++];
                rt.emit?.({ type: 'probe-start', step: ctx.step, candidate: job.candidate, candidates: rt.candidates });
                const o = await this.runOn(w, ctx, job);
                chain = chain.then(() => record(o));
                await chain;
                rt.emit?.({ type: 'probe-end', step: ctx.step, candidate: job.candidate, score: o.score });
              }
            }),
          );
        } catch (err) {
          if (rt.signal?.aborted) throw rt.signal.reason ?? new HopscotchError(ErrorCodes.ABORTED, 'the operation was aborted');
          throw err;
        } finally {
          rt.signal?.removeEventListener('abort', onAbort);
        }
      },
    };
  }

  /** Stops every worker this pool started, by PID. */
  close(): void {
    for (const w of this.workers) {
      w.child.removeAllListeners('exit');
      if (w.child.exitCode === null && w.child.signalCode === null && w.child.pid !== undefined) {
        try {
          process.kill(w.child.pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
    }
    this.workers = [];
  }
}

/** {@link selectBlocks} with `workers` > 1. */
export async function selectWithWorkers(model: Model, data: Dataset, opts: SelectOptions): Promise<Selection> {
  let pool: WorkerPool | undefined;
  try {
    return await runSelection(model, data, opts, (cfg) => {
      pool = new WorkerPool(model, cfg.rankData, cfg.plan.validation, opts.workers ?? 1);
      return pool.executor();
    });
  } finally {
    pool?.close();
  }
}

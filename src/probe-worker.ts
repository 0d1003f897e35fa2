/**
 * Entry of a probe worker process (workers.ts): loads the model once, then runs the
 * probe jobs it is sent, one at a time, and replies with their outcomes. Never started
 * by users directly.
 */
import { HopscotchError } from './errors.js';
import { load } from './model.js';
import { runProbeJob } from './probing.js';
import type { Model, Sample } from './types.js';
import type { WorkerReply, WorkerRequest } from './workers.js';

let model: Model | undefined;
let data: Sample[] = [];
let validation: Sample[] | undefined;
let queue = Promise.resolve();

const reply = (m: WorkerReply) => process.send?.(m);
const failure = (id: number | null, err: unknown): WorkerReply => {
  const e = err as { code?: string; message?: string };
  return { type: 'error', id, code: err instanceof HopscotchError || typeof e?.code === 'string' ? String(e.code) : 'HOPSCOTCH_ERR_INTERNAL', message: e?.message ?? String(err) };
};

process.on('message', (m: WorkerRequest) => {
  queue = queue.then(async () => {
    if (m.type === 'init') {
      try {
        model = await load(m.modelDir, { device: m.device, threads: m.threads });
        if (model.fingerprint !== m.fingerprint) throw new Error(`model ${m.modelDir} has fingerprint ${model.fingerprint}, the run has ${m.fingerprint}`);
        data = m.data;
        validation = m.validation ?? undefined;
        reply({ type: 'ready' });
      } catch (err) {
        reply(failure(null, err));
      }
      return;
    }
    try {
      if (!model) throw new Error('no model loaded');
      const outcome = await runProbeJob(model, data, validation, m.ctx, m.job);
      reply({ type: 'outcome', id: m.id, outcome });
    } catch (err) {
      reply(failure(m.id, err));
    }
  });
});
process.on('disconnect', () => {
  model?.dispose();
  process.exit(0);
});

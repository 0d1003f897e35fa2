/**
 * Typed errors. Every error thrown by the library is a {@link HopscotchError} with a
 * stable `code` (`HOPSCOTCH_ERR_*`); native errors cross the addon boundary with the
 * same codes.
 */

/** Every error code the library throws; documented in docs/errors.md. */
export const ErrorCodes = {
  IO: 'HOPSCOTCH_ERR_IO',
  SAFETENSORS_HEADER: 'HOPSCOTCH_ERR_SAFETENSORS_HEADER',
  SAFETENSORS_LAYOUT: 'HOPSCOTCH_ERR_SAFETENSORS_LAYOUT',
  SAFETENSORS_DTYPE: 'HOPSCOTCH_ERR_SAFETENSORS_DTYPE',
  SAFETENSORS_INDEX: 'HOPSCOTCH_ERR_SAFETENSORS_INDEX',
  GGUF_HEADER: 'HOPSCOTCH_ERR_GGUF_HEADER',
  GGUF_LAYOUT: 'HOPSCOTCH_ERR_GGUF_LAYOUT',
  EXISTS: 'HOPSCOTCH_ERR_EXISTS',
  CONFIG_INVALID: 'HOPSCOTCH_ERR_CONFIG_INVALID',
  CONFIG_UNSUPPORTED: 'HOPSCOTCH_ERR_CONFIG_UNSUPPORTED',
  MISSING_TENSOR: 'HOPSCOTCH_ERR_MISSING_TENSOR',
  SHAPE: 'HOPSCOTCH_ERR_SHAPE',
  TOKEN_RANGE: 'HOPSCOTCH_ERR_TOKEN_RANGE',
  EMPTY_BATCH: 'HOPSCOTCH_ERR_EMPTY_BATCH',
  EMPTY_RESPONSE: 'HOPSCOTCH_ERR_EMPTY_RESPONSE',
  TOKEN_CAP: 'HOPSCOTCH_ERR_TOKEN_CAP',
  CONTEXT: 'HOPSCOTCH_ERR_CONTEXT',
  THETA: 'HOPSCOTCH_ERR_THETA',
  SKIP: 'HOPSCOTCH_ERR_SKIP',
  DISPOSED: 'HOPSCOTCH_ERR_DISPOSED',
  CUDA: 'HOPSCOTCH_ERR_CUDA',
  CUDA_ABI: 'HOPSCOTCH_ERR_CUDA_ABI',
  INTERNAL: 'HOPSCOTCH_ERR_INTERNAL',
  ARGUMENT: 'HOPSCOTCH_ERR_ARGUMENT',
  TOKENIZER: 'HOPSCOTCH_ERR_TOKENIZER',
  DATASET: 'HOPSCOTCH_ERR_DATASET',
  FINGERPRINT: 'HOPSCOTCH_ERR_FINGERPRINT',
  CHECKPOINT: 'HOPSCOTCH_ERR_CHECKPOINT',
  EXPORT: 'HOPSCOTCH_ERR_EXPORT',
  ABORTED: 'HOPSCOTCH_ERR_ABORTED',
  NON_FINITE: 'HOPSCOTCH_ERR_NON_FINITE',
  PLAN: 'HOPSCOTCH_ERR_PLAN',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class HopscotchError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HopscotchError';
    this.code = code;
  }
}

/** Throws a {@link HopscotchError} with code ARGUMENT unless `ok`. */
export function check(ok: unknown, message: string, code: ErrorCode = ErrorCodes.ARGUMENT): asserts ok {
  if (!ok) throw new HopscotchError(code, message);
}

/** True for an integer > 0 (the type of every count, step and epoch option). */
export function isPositiveInteger(x: unknown): x is number {
  return Number.isInteger(x) && (x as number) > 0;
}

/** Re-types an error that came from the addon (it carries `code`) as a HopscotchError. */
export function fromNative(err: unknown): HopscotchError {
  if (err instanceof HopscotchError) return err;
  const e = err as { code?: string; message?: string };
  const known = Object.values(ErrorCodes) as string[];
  const code = (e && typeof e.code === 'string' && known.includes(e.code) ? e.code : ErrorCodes.INTERNAL) as ErrorCode;
  return new HopscotchError(code, e?.message ?? String(err), { cause: err });
}

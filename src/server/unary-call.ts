import {
  type handleUnaryCall,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { InvalidRequestError } from "../errors.js";
import type { Logger } from "../ops/logger.js";
import type { DaemonMetrics } from "../ops/metrics.js";
import { toCallFailure } from "./error-status.js";
import { isUndecodable } from "./protos.js";

/** What every unary handler needs besides its request. */
export interface CallDependencies {
  logger: Logger;
  metrics: DaemonMetrics;
}

const STATUS_NAMES = Object.fromEntries(
  Object.entries(status).map(([name, value]) => [value, name]),
) as Record<number, string>;

// The uid is the apiserver's correlation id; cap it so a hostile client cannot bloat logs.
function correlationId(request: object): string | undefined {
  const uid = (request as { uid?: unknown }).uid;
  return typeof uid === "string" && uid !== "" ? uid.slice(0, 128) : undefined;
}

/**
 * Adapts a synchronous handler to grpc-js: decodes failures into statuses, records metrics and
 * logs the outcome with the caller's uid. Logs carry method, uid and error text, never payloads.
 */
export function unaryCall<Request extends object, Response>(
  method: string,
  dependencies: CallDependencies,
  handle: (request: Request) => Response,
): handleUnaryCall<Request, Response> {
  const { logger, metrics } = dependencies;
  return (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => {
    const started = process.hrtime.bigint();
    const request = call.request;
    let code: status = status.OK;
    try {
      if (isUndecodable(request)) {
        throw new InvalidRequestError("request is not a valid protobuf message for this method");
      }
      const response = handle(request);
      callback(null, response);
      if (logger.isLevelEnabled("debug")) {
        logger.debug({ method, uid: correlationId(request) }, "call served");
      }
    } catch (error) {
      const failure = toCallFailure(error);
      code = failure.code;
      callback({ code: failure.code, details: failure.details });
      const fields = {
        method,
        uid: isUndecodable(request) ? undefined : correlationId(request),
        grpcCode: STATUS_NAMES[failure.code],
      };
      if (failure.unexpected) logger.error({ ...fields, err: error }, "call failed unexpectedly");
      else logger.warn({ ...fields, reason: failure.details }, "call refused");
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.observeCall(method, STATUS_NAMES[code] ?? "UNKNOWN", seconds);
    }
  };
}

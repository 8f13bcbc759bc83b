import { KmsEnvelopeError } from "../errors.js";
import { checkHealthz, type ProbeSources } from "../ops/probes.js";
import type { HealthCheckRequest__Output } from "../wire/generated/grpc/health/v1/HealthCheckRequest.js";
import type { HealthCheckResponse } from "../wire/generated/grpc/health/v1/HealthCheckResponse.js";
import type { ResponseStream, ServiceHandlers } from "./grpc-server.js";

type ServingStatus = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

// How often a Watch stream re-reads the (cached) health state; no provider call is made.
const WATCH_POLL_MS = 1000;

/** `grpc.health.v1.Health` plus a way to end open Watch streams so shutdown can drain. */
interface HealthService {
  handlers: ServiceHandlers;
  /** Ends every Watch stream; called when the daemon starts draining. */
  closeWatches(): void;
}

/** The standard gRPC health service: "" and each served service name report the deep health. */
export function healthService(
  serviceNames: readonly string[],
  probes: ProbeSources,
): HealthService {
  const known = new Set(["", ...serviceNames]);
  const watches = new Set<ResponseStream>();
  const current = (): ServingStatus => (checkHealthz(probes).ok ? "SERVING" : "NOT_SERVING");

  const handlers: ServiceHandlers = {
    Check: (request: HealthCheckRequest__Output): HealthCheckResponse => {
      if (!known.has(request.service)) {
        throw new KmsEnvelopeError(
          "UNKNOWN_SERVICE",
          `unknown service ${JSON.stringify(request.service.slice(0, 128))}`,
        );
      }
      return { status: current() };
    },
    Watch: (request: HealthCheckRequest__Output, stream: ResponseStream) => {
      if (!known.has(request.service)) {
        stream.write({ status: "SERVICE_UNKNOWN" });
        stream.end();
        return;
      }
      let last = current();
      stream.write({ status: last });
      watches.add(stream);
      const timer = setInterval(() => {
        const now = current();
        if (now !== last) {
          last = now;
          stream.write({ status: now });
        }
      }, WATCH_POLL_MS);
      stream.onClose(() => {
        clearInterval(timer);
        watches.delete(stream);
      });
    },
  };
  return {
    handlers,
    closeWatches: () => {
      for (const stream of watches) stream.end();
    },
  };
}

import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { KmsEnvelopeError } from "../errors.js";
import { checkHealthz, type ProbeSources } from "../ops/probes.js";
import { type CallDependencies, unaryCall } from "./unary-call.js";

type ServingStatus = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

// How often a Watch stream re-reads the (cached) health state; no provider call is made.
const WATCH_POLL_MS = 1000;

/** `grpc.health.v1.Health` plus a way to end open Watch streams so shutdown can drain. */
export interface HealthService {
  implementation: UntypedServiceImplementation;
  /** Ends every Watch stream; called when the daemon starts draining. */
  closeWatches(): void;
}

/** The standard gRPC health service: "" and each served service name report the deep health. */
export function healthService(
  serviceNames: readonly string[],
  probes: ProbeSources,
  dependencies: CallDependencies,
): HealthService {
  const known = new Set(["", ...serviceNames]);
  const watches = new Set<ServerWritableStream<{ service: string }, { status: ServingStatus }>>();
  const current = (): ServingStatus => (checkHealthz(probes).ok ? "SERVING" : "NOT_SERVING");

  const implementation: UntypedServiceImplementation = {
    Check: unaryCall<{ service: string }, { status: ServingStatus }>(
      "/grpc.health.v1.Health/Check",
      dependencies,
      (request) => {
        if (!known.has(request.service)) {
          throw new KmsEnvelopeError(
            "UNKNOWN_SERVICE",
            `unknown service ${JSON.stringify(request.service.slice(0, 128))}`,
          );
        }
        return { status: current() };
      },
    ),
    Watch: (call: ServerWritableStream<{ service: string }, { status: ServingStatus }>) => {
      if (!known.has(call.request.service)) {
        call.write({ status: "SERVICE_UNKNOWN" });
        call.end();
        return;
      }
      let last = current();
      call.write({ status: last });
      watches.add(call);
      const timer = setInterval(() => {
        const now = current();
        if (now !== last) {
          last = now;
          call.write({ status: now });
        }
      }, WATCH_POLL_MS);
      const stop = (): void => {
        clearInterval(timer);
        watches.delete(call);
      };
      call.on("cancelled", stop);
      call.on("close", stop);
    },
  };
  return {
    implementation,
    closeWatches: () => {
      for (const call of watches) {
        call.emit("close");
        call.end();
      }
    },
  };
}

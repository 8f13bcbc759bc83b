import type { CallOptions, Client, ServiceError } from "@grpc/grpc-js";

type UnaryMethod = (
  request: object,
  options: CallOptions,
  callback: (error: ServiceError | null, response: unknown) => void,
) => void;

/** Calls a unary method of a client made from the loaded protos, as a promise. */
export function callUnary<Response>(
  client: Client,
  method: string,
  request: object,
  options: CallOptions = {},
): Promise<Response> {
  const invoke = (client as unknown as Record<string, UnaryMethod | undefined>)[method];
  if (invoke === undefined)
    return Promise.reject(new TypeError(`the client has no method ${method}`));
  return new Promise<Response>((resolve, reject) => {
    invoke.call(client, request, options, (error, response) => {
      if (error) reject(error);
      else resolve(response as Response);
    });
  });
}

import { parseGoUrl } from "./go-url.js";

type KmsEndpointResult =
  | { readonly ok: true; readonly socketPath: string }
  | { readonly ok: false; readonly message: string };

/**
 * Checks a kms `endpoint` as kube-apiserver's validation does (a parsable URL with scheme
 * unix, compared after Go lowercases it) and resolves the socket as k8s.io/kms ParseEndpoint
 * does: the URL path, with `/@name` meaning the Linux abstract socket `@name`, written here in
 * the "\0name" form Node's net module dials.
 *
 * One deliberate addition: an endpoint with no path (`unix:relative`, `unix://host`) passes
 * the apiserver's validation but can never be dialled, so it is refused here.
 */
export function parseKmsEndpoint(endpoint: string): KmsEndpointResult {
  if (endpoint === "") {
    return {
      ok: false,
      message: "endpoint is a mandatory field for a kms: write unix:///path/to/plugin.sock",
    };
  }
  const url = parseGoUrl(endpoint);
  if (!url.ok) {
    return { ok: false, message: `invalid endpoint for kms provider, error: ${url.error}` };
  }
  if (url.scheme !== "unix") {
    return {
      ok: false,
      message: `unsupported scheme ${JSON.stringify(url.scheme)} for KMS provider, only unix is supported: write unix:///path/to/plugin.sock`,
    };
  }
  if (url.path === "") {
    return {
      ok: false,
      message:
        "endpoint names no socket: write unix:///path/to/plugin.sock or unix:///@abstract-name",
    };
  }
  return {
    ok: true,
    socketPath: url.path.startsWith("/@") ? `\0${url.path.slice(2)}` : url.path,
  };
}

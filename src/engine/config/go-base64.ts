/**
 * Go's base64.StdEncoding.DecodeString, which kube-apiserver applies to key secrets: the
 * standard alphabet with `=` padding required, CR and LF ignored anywhere, anything else an
 * error. Unused trailing bits are tolerated (StdEncoding is not Strict), as Node also does.
 * Returns undefined for invalid input; the caller reports it without echoing the secret.
 */
export function decodeGoStdBase64(text: string): Uint8Array | undefined {
  const compact = text.replace(/[\r\n]/g, "");
  if (compact.length % 4 !== 0) return undefined;
  if (!/^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(compact)) {
    return undefined;
  }
  return new Uint8Array(Buffer.from(compact, "base64"));
}

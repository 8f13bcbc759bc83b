/**
 * A reader that stops early (`kms-envelope export … | head -2`) closes the pipe under stdout, and
 * the next write fails with EPIPE. That is the reader saying it has enough, not a failure of the
 * command: it ends at once and quietly, with the exit code it has so far (0 unless something
 * already failed), as `head` users expect. Any other stdout error is one line and exit 1.
 */
export function endQuietlyWhenStdoutCloses(): void {
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit();
    process.stderr.write(`kms-envelope: cannot write to stdout: ${error.message}\n`);
    process.exit(1);
  });
}

/**
 * serve's stdout is its log. A log reader that goes away (a closed pipe, a stopped collector)
 * must not take kube-apiserver's KMS plugin down with it: the daemon keeps serving, says once on
 * stderr that its log is lost, and drops further log lines.
 */
export function keepServingWhenStdoutCloses(): void {
  let told = false;
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (told) return;
    told = true;
    process.stderr.write(
      `kms-envelope: the log on stdout cannot be written (${error.code ?? error.message}); serving on without it: restart with a log reader attached\n`,
    );
  });
}

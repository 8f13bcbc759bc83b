#!/usr/bin/env node
import { endQuietlyWhenStdoutCloses, keepServingWhenStdoutCloses } from "./closed-stdout.js";
import { StopSignals } from "./stop-signals.js";

// `serve` catches stop signals before the rest of the CLI is loaded (which takes a noticeable
// moment), so a SIGTERM at any point of its start-up is a clean exit 0; other commands keep
// the default behaviour of a signal.
const command = process.argv.slice(2).find((argument) => !argument.startsWith("-"));
const stopSignals = command === "serve" ? StopSignals.install() : undefined;
// Every other command's stdout is output for a reader who may stop early. serve's stdout is its
// log: losing the log reader must neither stop the daemon nor look like a clean stop.
if (command === "serve") keepServingWhenStdoutCloses();
else endQuietlyWhenStdoutCloses();
const { runProgram } = await import("./program.js");
await runProgram(stopSignals);

#!/usr/bin/env node
// The operator CLI runs its TypeScript sources directly through tsx (Node 22+).
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv);

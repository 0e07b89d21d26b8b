/** An HTTP answer past the clients' 64 MiB cap, for the ResponseTooLarge tests. */
import type { ServerResponse } from "node:http";

const MIB = Buffer.alloc(1024 * 1024, 0x20);

/**
 * Answers 65 MiB in 1 MiB writes, chunked or (`declared`) with its Content-Length up front,
 * honouring back-pressure and stopping once the client hangs up.
 */
export function answerTooLarge(res: ServerResponse, declared: boolean): void {
  res.on("error", () => undefined);
  res.writeHead(200, {
    "content-type": "application/json",
    ...(declared ? { "content-length": String(65 * MIB.length) } : {}),
  });
  const write = (left: number): void => {
    if (left === 0 || res.destroyed) return void res.end();
    if (res.write(MIB)) write(left - 1);
    else res.once("drain", () => write(left - 1));
  };
  write(65);
}

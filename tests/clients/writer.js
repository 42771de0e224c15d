// Copyright (c) redisops.cluster contributors
// GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
// SPDX-License-Identifier: GPL-3.0-or-later
//
// An ioredis cluster client that writes and reads back keys until its standard input closes (or max_seconds pass),
// then prints one JSON line: writes tried, keys acknowledged, errors (every error the client raised counts).
// Usage: node writer.js <host> <port> <prefix> [max_seconds] [interval_ms]; REDIS_PASSWORD in the environment if
// needed. interval_ms: a pause between writes (0, the default: as fast as it can).
// It prints "ready" once its first key is written.
"use strict";

const Redis = require("ioredis");

const [host, port, prefix, maxSeconds = "300", intervalMs = "0"] = process.argv.slice(2);
const client = new Redis.Cluster([{ host, port: Number(port) }], {
  redisOptions: { password: process.env.REDIS_PASSWORD || undefined },
});
client.on("error", () => {}); // errors reach the commands that meet them, where they are counted

let stopping = false;
process.stdin.on("end", () => { stopping = true; });
process.stdin.on("close", () => { stopping = true; });
process.stdin.resume();
const deadline = Date.now() + Number(maxSeconds) * 1000;

const acknowledged = [];
const errors = [];
// ioredis can throw outside any command (e.g. "Connection is closed" while a node it reaches is killed): that reaches
// the application too, so it counts as an error, and the writer goes on.
process.on("uncaughtException", (error) => { errors.push(`uncaught: ${error.name}: ${error.message}`); });

async function main() {
  let writes = 0;
  for (let index = 0; !stopping && Date.now() < deadline; index++) {
    const key = `${prefix}:${index}`;
    const value = `v${index}`;
    writes++;
    try {
      await client.set(key, value);
      acknowledged.push(key);
      const read = await client.get(key);
      if (read !== value) errors.push(`read back mismatch for ${key}: ${read}`);
    } catch (error) {
      errors.push(`${key}: ${error.name}: ${error.message}`);
    }
    if (index === 0) process.stdout.write("ready\n");
    if (Number(intervalMs) > 0) await new Promise((resolve) => setTimeout(resolve, Number(intervalMs)));
  }
  process.stdout.write(JSON.stringify({ client: `ioredis ${require("ioredis/package.json").version}`, writes,
    acknowledged, errors }) + "\n");
  client.disconnect();
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ fatal: String(error) }) + "\n");
  process.exit(1);
});

/// <reference types="vitest/config" />
// The page is served by the trading service at `/` (frontend/dist, mounted in
// serving/service/api.py). `npm run dev` proxies the API to a service on $PHEMEX_RL_API
// (default http://127.0.0.1:3000) for work on the page itself.
import { defineConfig } from "vite";

const api = process.env.PHEMEX_RL_API ?? "http://127.0.0.1:3000";
const routes = ["/status", "/positions", "/orders", "/fills", "/decisions", "/equity", "/risk", "/drift", "/bars", "/config", "/events", "/control"];

export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 400 },
  server: { proxy: Object.fromEntries(routes.map((r) => [r, { target: api, changeOrigin: false }])) },
  test: { environment: "node", include: ["tests/**/*.test.ts"] },
});

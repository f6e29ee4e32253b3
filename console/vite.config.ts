// Builds the console into dist/, which Envoy serves at /console (envoy/envoy.yaml, server/envoy.py).
// Envoy serves fixed paths, so the output has fixed names: dist/index.html and dist/assets/console.js
// (one chunk; the styles are inline in index.html). They change with every build, so Envoy sends them
// with `cache-control: no-cache`.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  plugins: [react()],
  resolve: {
    // The SDK's client (../sdk/typescript/src) and the generated code (../gen/ts) import these; they
    // must resolve to this package's node_modules, one copy each.
    dedupe: ["@bufbuild/protobuf", "@connectrpc/connect"],
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 2048,
    rolldownOptions: {
      output: {
        entryFileNames: "assets/console.js",
        chunkFileNames: "assets/console-[name].js",
        assetFileNames: "assets/[name][extname]",
        codeSplitting: false,
      },
    },
  },
});

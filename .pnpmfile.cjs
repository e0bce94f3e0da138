// The manifest that `pnpm pack` and `pnpm publish` put in each tarball. Users install the
// packages, they never build them: the development-only fields would only name tools and the
// private @handshake/conformance package, which is not on the registry.
// Editing this file changes `pnpmfileChecksum` in pnpm-lock.yaml: run `pnpm install` after.
module.exports = {
  hooks: {
    beforePacking(manifest) {
      delete manifest.devDependencies
      delete manifest.scripts
      return manifest
    },
  },
}

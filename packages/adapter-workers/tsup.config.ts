import { packageConfig } from '../../tsup.base'

// workerd's built-in module: the Worker's bundler (wrangler) or workerd resolves it.
export default packageConfig({ external: ['cloudflare:workers'] })

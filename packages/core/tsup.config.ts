import { packageConfig } from '../../tsup.base'

export default packageConfig({
  entry: ['src/index.ts', 'src/adapter.ts', 'src/channels.ts', 'src/testing.ts'],
})

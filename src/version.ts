/** The package version, read once from package.json (one level up from both src/ and dist/). */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside rootDir (src/): read at run time
export const VERSION: string = (require('../package.json') as { version: string }).version;

// @ts-check
/**
 * Lint: ESLint's recommended rules plus typescript-eslint's type-checked ones, over every TS and JS file
 * (built code, dependencies and the addon's build output are not ours). Every disable comment must say why
 * (`// eslint-disable-next-line rule -- reason`). Formatting is Prettier's (.prettierrc.json): no rule here is
 * about layout.
 */
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const comments = require('@eslint-community/eslint-plugin-eslint-comments/configs');
const globals = require('globals');
const { defineConfig } = require('eslint/config');

module.exports = defineConfig(
  { ignores: ['dist/', 'node_modules/', 'native/*/build/', 'bench/out/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  comments.recommended,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { project: './tsconfig.check.json', tsconfigRootDir: __dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@eslint-community/eslint-comments/require-description': 'error',
      // `const { op: _op, ...rest } = x` drops a field on purpose.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Plain Node scripts (CommonJS): require() is how they load modules.
    files: ['**/*.js'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // jest's asymmetric matchers (expect.stringMatching, expect.any, ...) are typed `any`.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      // Fakes implement async interfaces without awaiting anything.
      '@typescript-eslint/require-await': 'off',
    },
  },
);

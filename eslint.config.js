import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/public/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-restricted-imports': ['error', { patterns: [{ group: ['../../*/src/*', '../../../packages/*', '../../../apps/*'], message: 'import other workspace packages by name (@slipway/...)' }] }],
      'no-restricted-syntax': ['error',
        { selector: "CallExpression[callee.name='execSync']", message: 'no shell: use runCommand with an argv array' },
        { selector: "Property[key.name='shell'][value.value=true]", message: 'no shell: use an argv array' },
      ],
    },
  },
);

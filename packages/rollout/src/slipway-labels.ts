/** Docker labels on every container Slipway starts; old containers are found by these, never by image name. */
export const LABELS = {
  app: 'slipway.app',
  /** The full 40-hex commit; absent for an image deploy. */
  sha: 'slipway.sha',
  /** The job (release) id that started the container. */
  release: 'slipway.release',
  /** routing: dns only: the address of `dns.address_pool` the container is published on; allocations are derived from these. */
  address: 'slipway.address',
} as const;

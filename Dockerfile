# Slipway itself, for docker-compose.yml. Build: docker build -t slipway .
FROM node:20-bookworm-slim AS build
WORKDIR /slipway
COPY package.json package-lock.json turbo.json tsconfig.base.json ./
COPY packages packages
COPY apps apps
COPY scripts scripts
COPY test/package.json test/package.json
RUN npm ci --no-audit --no-fund \
 && npx turbo run build --filter='./apps/*' --filter='./packages/*' \
 && npm prune --omit=dev

FROM node:20-bookworm-slim
# git to clone, nginx to check candidate configs, curl to signal the nginx container, ssh for ssh:// repos.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git nginx-light curl ca-certificates openssh-client iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /slipway /slipway
ENV PATH=/slipway/node_modules/.bin:$PATH NODE_ENV=production
WORKDIR /var/lib/slipway
ENTRYPOINT ["slipway"]
CMD ["--help"]

# The handler as a container image, for AWS (ECS/Fargate, App Runner, EKS, or AWS Lambda
# through the Lambda Web Adapter) or any other container host. README: "The AWS route".
#
#   docker build -t mongo-lake-ingest .
#   docker run -p 8080:8080 -e S3_BUCKET=<bucket> -e AWS_REGION=<region> \
#     -e INGEST_HMAC_SECRET=<secret> mongo-lake-ingest
#
# Build stage: the release binary (rustls, no OpenSSL), from the locked dependencies.
FROM rust:1.88-bookworm AS build
WORKDIR /src
# Every file Cargo reads to resolve the workspace and its targets (the DFS test server is
# a workspace member and a dev-dependency; the benches are declared targets).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests/dfs-server ./tests/dfs-server
RUN cargo build --release --locked --bin handler

# Run stage: a small Debian with CA certificates (S3's client also reads the system's).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/handler /usr/local/bin/handler
# AWS Lambda only: the Lambda Web Adapter runs as an extension and forwards each
# invocation to the handler's port; outside Lambda it is never started. Remove this line
# for ECS, App Runner or EKS.
COPY --from=public.ecr.aws/awsguru/aws-lambda-adapter:0.9.1 /lambda-adapter /opt/extensions/lambda-adapter
ENV BIND_ADDR=0.0.0.0:8080 \
    AWS_LWA_PORT=8080 \
    AWS_LWA_READINESS_CHECK_PATH=/health \
    LOG_FORMAT=json
USER 65534:65534
EXPOSE 8080
# `handler` serves; `handler compact` and `handler mirror` run one pass and exit (a
# scheduled ECS task or EventBridge Scheduler with the same image and another command).
ENTRYPOINT ["/usr/local/bin/handler"]

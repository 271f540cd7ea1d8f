# One slim image for the three dranet containers; each DaemonSet container
# picks its console script (dranet-netlink-agent, dranet-kubelet-plugin,
# dranet-nri-hook). Non-root by default: the manifests grant root only where
# host directories or namespaces require it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY services services
COPY sandbox sandbox
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532:65532
CMD ["dranet", "--help"]

FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock requirements-nodeps.txt pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -r requirements-nodeps.txt -e .
ENV DIFY_PORT=5001
EXPOSE 5001
# MODE (api | worker | scheduler | migration | job) picks the role, as in Dify's entrypoint.
CMD ["eddy"]

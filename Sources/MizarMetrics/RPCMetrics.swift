import GRPCCore
import Prometheus

/// Counts a gRPC server's calls by method and status code and times them
/// (`mizar_rpc_requests_total{method,code}`,
/// `mizar_rpc_duration_seconds{method}`): a call is counted when its
/// answer has been sent, or when it was refused. Labels are bounded: the
/// service's methods, and gRPC's 17 codes.
public struct RPCMetrics: ServerInterceptor {
    let registry: PrometheusCollectorRegistry

    /// From 100 µs to 10 s (a table write to a host's answer to a timeout).
    static let buckets: [Duration] = [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
                                      .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                      .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(10)]

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let method = context.descriptor.method
        let start = ContinuousClock.now
        let done: @Sendable (RPCError.Code?) -> Void = { [registry] code in
            Self.record(registry, method: method, code: code, took: ContinuousClock.now - start)
        }
        do {
            var response = try await next(request, context)
            switch response.accepted {
            case .success(var contents):
                let produce = contents.producer
                contents.producer = { writer in
                    do {
                        let trailers = try await produce(writer)
                        done(nil)
                        return trailers
                    } catch {
                        done((error as? RPCError)?.code ?? .unknown)
                        throw error
                    }
                }
                response.accepted = .success(contents)
            case .failure(let error):
                done(error.code)
            }
            return response
        } catch {
            done((error as? RPCError)?.code ?? .unknown)
            throw error
        }
    }

    static func record(_ registry: PrometheusCollectorRegistry, method: String, code: RPCError.Code?, took: Duration) {
        let requests = MetricNameDescriptor(namespace: "mizar", subsystem: "rpc", metricName: "requests", unitName: "total",
                                            helpText: "gRPC calls served, by method and status code.")
        registry.makeCounter(descriptor: requests, labels: [("method", method), ("code", code.map { "\($0)" } ?? "ok")]).increment()
        let duration = MetricNameDescriptor(namespace: "mizar", subsystem: "rpc", metricName: "duration", unitName: "seconds",
                                            helpText: "How long gRPC calls took to answer, by method.")
        registry.makeDurationHistogram(descriptor: duration, labels: [("method", method)], buckets: buckets).record(took)
    }
}

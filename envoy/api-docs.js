// Starts Swagger UI on the OpenAPI document Envoy serves next to it. "Try it out" sends requests to
// this same origin (the document names no servers), with the API key given under "Authorize".
window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.yaml",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});

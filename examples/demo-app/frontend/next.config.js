/** @type {import('next').NextConfig} */
const nextConfig = {
  // The runtime image carries only .next/standalone (server.js plus traced node_modules).
  output: "standalone",
  poweredByHeader: false,
};

module.exports = nextConfig;

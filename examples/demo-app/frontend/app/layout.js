export const metadata = {
  title: "A-Stats dev cockpit (demo)",
};

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}

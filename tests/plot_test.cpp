// SVG pictures: the comparison plot (points, Pareto front, escaped labels) and the importance heat
// map (one cell per layer and tensor), and both rendered by headless Chromium from `lq quality
// compare --plot` and `lq analyze --plot`, the PNGs checked for content (skipped without Chromium).
#include <lq/error.hpp>
#include <lq/io.hpp>
#include <lq/plot.hpp>

#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#ifdef LQ_TEST_HAVE_ZLIB
#include <zlib.h>
#endif

#include <cstdlib>
#include <regex>
#include <set>

using namespace lq;
namespace fs = std::filesystem;

namespace {

size_t count_of(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + needle.size())) ++n;
  return n;
}

ComparedModel plot_model(const std::string& path, uint64_t bytes, double ppl, std::optional<double> kld) {
  ComparedModel m;
  m.path = path;
  m.size.file_bytes = bytes;
  PerplexityResult p;
  p.ppl = ppl;
  m.perplexity = p;
  if (kld) {
    KldResult k;
    k.kld_mean = *kld;
    m.kld = k;
  }
  return m;
}

ModelComparison plot_comparison() {
  ModelComparison c;
  c.calibration_source = "text <with> & \"quotes\"";
  c.chunks = 4;
  c.ctx = 64;
  c.models = {plot_model("/m/original", 12'000'000, 10.02, std::nullopt),
              plot_model("/m/a-Q8_0.gguf", 6'000'000, 10.01, 0.001),
              plot_model("/m/b-Q4_0.gguf", 3'300'000, 10.5, 0.02),
              plot_model("/m/c-Q4_1.gguf", 3'600'000, 10.8, 0.03),  // bigger and worse than Q4_0: dominated
              plot_model("/m/d&\xFF.gguf", 2'500'000, 12.0, 0.09)};
  return c;
}

// The first path on PATH named one of `names`, or "".
std::string find_program(std::initializer_list<const char*> names) {
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::string p = path;
  for (const char* n : names) {
    size_t start = 0;
    while (start <= p.size()) {
      const size_t end = p.find(':', start);
      const fs::path cand = fs::path(p.substr(start, end == std::string::npos ? std::string::npos : end - start)) / n;
      std::error_code ec;
      if (fs::is_regular_file(cand, ec)) return cand.string();
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  return {};
}

// What a PNG shows: its size and, with zlib, how many pixels differ from the corner's colour, how
// many colours it has, and whether a colour near `probe` (RGB) occurs.
struct PngSummary {
  uint32_t width = 0, height = 0;
  bool decoded = false;
  double non_background = 0;  ///< fraction of pixels unlike the top-left one
  size_t colours = 0;
  bool has_probe = false;
};

uint32_t png_be32(const std::string& b, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(b[at])) << 24) | (static_cast<uint32_t>(static_cast<uint8_t>(b[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(b[at + 2])) << 8) | static_cast<uint8_t>(b[at + 3]);
}

PngSummary summarize_png(const fs::path& file, std::array<int, 3> probe) {
  const std::string b = read_file(file);
  PngSummary s;
  REQUIRE(b.size() > 33);
  REQUIRE(b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  REQUIRE(b.compare(12, 4, "IHDR") == 0);
  s.width = png_be32(b, 16);
  s.height = png_be32(b, 20);
#ifdef LQ_TEST_HAVE_ZLIB
  const int depth = static_cast<uint8_t>(b[24]), colour_type = static_cast<uint8_t>(b[25]),
            interlace = static_cast<uint8_t>(b[28]);
  if (depth != 8 || (colour_type != 2 && colour_type != 6) || interlace != 0) return s;
  const size_t bpp = colour_type == 6 ? 4 : 3;
  std::string idat;
  for (size_t at = 8; at + 8 <= b.size();) {
    const uint32_t len = png_be32(b, at);
    const std::string type = b.substr(at + 4, 4);
    if (type == "IDAT") idat += b.substr(at + 8, len);
    at += 12 + len;
  }
  const size_t stride = s.width * bpp;
  std::vector<uint8_t> raw((stride + 1) * s.height);
  uLongf raw_len = raw.size();
  REQUIRE(uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) == Z_OK);
  REQUIRE(raw_len == raw.size());
  std::vector<uint8_t> px(stride * s.height), prev(stride, 0);
  for (uint32_t y = 0; y < s.height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    uint8_t* out = &px[y * stride];
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= bpp ? out[x - bpp] : 0, up = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
      int pred = 0;
      switch (filter) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = up; break;
        case 3: pred = (a + up) / 2; break;
        case 4: {
          const int p = a + up - c, pa = std::abs(p - a), pb = std::abs(p - up), pc = std::abs(p - c);
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? up : c;
          break;
        }
        default: FAIL("bad PNG filter " << int(filter));
      }
      out[x] = static_cast<uint8_t>(in[x] + pred);
    }
    std::copy(out, out + stride, prev.begin());
  }
  std::set<uint32_t> colours;
  size_t differ = 0;
  const uint8_t* bg = px.data();
  for (size_t i = 0; i < px.size(); i += bpp) {
    const uint32_t rgb = (uint32_t{px[i]} << 16) | (uint32_t{px[i + 1]} << 8) | px[i + 2];
    colours.insert(rgb);
    if (px[i] != bg[0] || px[i + 1] != bg[1] || px[i + 2] != bg[2]) ++differ;
    if (std::abs(px[i] - probe[0]) < 12 && std::abs(px[i + 1] - probe[1]) < 12 && std::abs(px[i + 2] - probe[2]) < 12)
      s.has_probe = true;
  }
  s.decoded = true;
  s.colours = colours.size();
  s.non_background = static_cast<double>(differ) / static_cast<double>(s.width) / static_cast<double>(s.height);
#endif
  return s;
}

// Renders an SVG file with headless Chromium at the picture's own size.
fs::path render_png(const std::string& chromium, const fs::path& svg, const test::TempDir& d) {
  const std::string text = read_file(svg);
  std::smatch m;
  REQUIRE(std::regex_search(text, m, std::regex(R"re(<svg [^>]*width="([0-9.]+)" height="([0-9.]+)")re")));
  const fs::path png = d / (svg.stem().string() + ".png");
  const std::string cmd = "timeout 120 " + chromium + " --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run" +
                          " --user-data-dir=" + (d / "chromium-profile").string() + " --window-size=" + m[1].str() + "," +
                          m[2].str() + " --screenshot=" + png.string() + " file://" + fs::absolute(svg).string();
  const auto r = test::run(cmd);
  INFO(cmd << "\n" << r.err);
  REQUIRE(r.status == 0);
  REQUIRE(fs::exists(png));
  return png;
}

}  // namespace

TEST_CASE("plot: the comparison plot has a point per model and panel, the front and escaped labels", "[plot]") {
  const std::string svg = comparison_plot_svg(plot_comparison());
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  // 5 models x 2 panels, plus the legend's two markers.
  CHECK(count_of(svg, "<circle ") == 12);
  CHECK(count_of(svg, "class=\"front\"") == 2);
  // Q4_1 is bigger and worse than Q4_0 in both panels; the original is bigger and worse than Q8_0
  // in perplexity but alone at KLD 0.
  CHECK(count_of(svg, "class=\"pt\"><title>c-Q4_1.gguf") == 2);
  CHECK(count_of(svg, "class=\"pt-front\"><title>b-Q4_0.gguf") == 2);
  CHECK(count_of(svg, "class=\"pt-front\"><title>original (original)") == 1);  // KLD 0: on the KLD front only
  CHECK(count_of(svg, "class=\"pt\"><title>original (original)") == 1);
  // Labels and the text source escaped for XML; invalid UTF-8 as \xNN.
  CHECK(svg.find("d&amp;\\xff.gguf") != std::string::npos);
  CHECK(svg.find("text &lt;with&gt; &amp; &quot;quotes&quot;") != std::string::npos);
  CHECK(svg.find("\xFF") == std::string::npos);
  CHECK(svg.find("<with>") == std::string::npos);

  ModelComparison no_kld = plot_comparison();
  no_kld.models[2].kld.reset();
  CHECK_THROWS_AS(comparison_plot_svg(no_kld), Error);
}

TEST_CASE("plot: crowded points get labels that overlap nothing, and decades of KLD a log axis", "[plot]") {
  // Eight models within 1.2 MB and 0.05 of perplexity, their KLDs from 1e-4 to 0.09 (a real
  // comparison's shape): every label placed clear of every other label, inside its panel.
  ModelComparison c;
  c.calibration_source = "eval";
  c.chunks = 40;
  c.ctx = 256;
  c.models = {plot_model("/m/tiny", 11'500'000, 11.83, std::nullopt)};
  const double mb[] = {1.8, 2.4, 3.0, 3.3, 3.6, 4.2, 4.8, 6.2};
  const double ppl[] = {12.61, 12.36, 11.88, 11.84, 11.85, 11.84, 11.82, 11.83};
  const double kld[] = {0.09, 0.051, 0.012, 0.0046, 0.0037, 0.0013, 0.0007, 0.0001};
  for (int i = 0; i < 8; ++i)
    c.models.push_back(plot_model(fmt::format("/m/tiny-L{}.gguf", i), static_cast<uint64_t>(mb[i] * 1e6), ppl[i], kld[i]));
  const std::string svg = comparison_plot_svg(c);
  struct Box {
    double x0, y0, x1, y1;
  };
  std::vector<Box> boxes[2];
  const std::regex label(R"re(<text x="([0-9.]+)" y="([0-9.]+)" class="label" text-anchor="(start|end)">([^<]*)</text>)re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), label); it != std::sregex_iterator(); ++it) {
    const double x = std::stod((*it)[1]), y = std::stod((*it)[2]);
    const double w = 6.3 * static_cast<double>((*it)[4].length());
    const Box b{(*it)[3] == "end" ? x - w : x, y - 10, (*it)[3] == "end" ? x : x + w, y + 3};
    if (b.y0 > 420) continue;  // the legend
    boxes[x < 530 ? 0 : 1].push_back(b);
  }
  for (int panel = 0; panel < 2; ++panel) {
    INFO("panel " << panel);
    REQUIRE(boxes[panel].size() == 9);
    const double ox = panel == 0 ? 90 : 590;
    for (size_t i = 0; i < boxes[panel].size(); ++i) {
      const Box& a = boxes[panel][i];
      CHECK(a.x0 >= ox - 1);
      CHECK(a.x1 <= ox + 380 + 1);
      for (size_t j = i + 1; j < boxes[panel].size(); ++j) {
        const Box& b = boxes[panel][j];
        CHECK_FALSE((a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1));
      }
    }
  }
  // The KLD axis is logarithmic (1e-4 to 0.09), with the original at its floor marked 0.
  CHECK(svg.find("mean KLD (nats per token) (log scale)") != std::string::npos);
  CHECK(svg.find(">0.001</text>") != std::string::npos);
  CHECK(svg.find("text-anchor=\"end\">0</text>") != std::string::npos);
  CHECK(svg.find("class=\"leader\"") != std::string::npos);
  // The perplexity axis stays linear, and so does a KLD axis within one decade.
  CHECK(count_of(svg, "(log scale)") == 1);
  ModelComparison narrow = plot_comparison();
  narrow.models[1].kld->kld_mean = 0.012;  // KLDs 0.012 to 0.09
  CHECK(comparison_plot_svg(narrow).find("(log scale)") == std::string::npos);
}

TEST_CASE("plot: the heat map has one cell per layer and tensor kind", "[plot]") {
  std::vector<LayerScore> scores;
  const std::vector<std::string> kinds = {"ffn_down", "attn_q", "attn_output", "ffn_up"};
  for (int layer = 0; layer < 3; ++layer)
    for (size_t k = 0; k < kinds.size(); ++k) {
      LayerScore l;
      l.layer_index = layer;
      l.tensor = "blk." + std::to_string(layer) + "." + kinds[k] + ".weight";
      l.score = std::pow(10.0, static_cast<double>(layer + k) - 3);
      l.importance_score = l.score / 100;
      scores.push_back(l);
    }
  LayerScore out;
  out.tensor = "output.weight";
  out.layer_index = -1;
  out.score = 5;
  scores.push_back(out);
  const std::string svg = importance_heatmap_svg(scores, "tiny & <model>");
  CHECK(count_of(svg, "<title>blk.") == 12);
  CHECK(svg.find("<title>output.weight") == std::string::npos);
  CHECK(svg.find("tiny &amp; &lt;model&gt;") != std::string::npos);
  // Columns in the canonical order.
  const size_t q = svg.find(">attn_q<"), o = svg.find(">attn_output<"), u = svg.find(">ffn_up<"), d = svg.find(">ffn_down<");
  CHECK(q < o);
  CHECK(o < u);
  CHECK(u < d);
  CHECK(count_of(svg, ">layer ") == 3);
  // The smallest score is the darkest colour, the largest the brightest.
  CHECK(svg.find("fill=\"#440154\" stroke=\"#fafafa\"><title>blk.0.ffn_down.weight") != std::string::npos);
  CHECK(svg.find("fill=\"#fde725\" stroke=\"#fafafa\"><title>blk.2.ffn_up.weight") != std::string::npos);
  CHECK_THROWS_AS(importance_heatmap_svg(std::span(scores).last(1), "none"), Error);
}

TEST_CASE("plot: lq quality compare --plot and lq analyze --plot render in Chromium", "[plot]") {
  const auto files = test::shared_files<4>(
      {"models/tiny-llama", "golden/pure/Q4_0.gguf", "golden/pure/Q8_0.gguf", "corpus/eval.txt"});
  if (!files) return;
  const auto& [hf, q4, q8, eval] = *files;
  test::TempDir d;
  const std::string lq = test::cli_path();
  const fs::path cmp_svg = d / "compare.svg", heat_svg = d / "heat.svg";
  auto r = test::run(lq + " quality compare " + hf.string() + " " + q4.string() + " " + q8.string() +
                     " --ctx 64 --calibration-samples 2 --threads 2 --calibration-data " + eval.string() + " --plot " +
                     cmp_svg.string());
  REQUIRE(r.status == 0);
  CHECK(r.err.find("Plot written: ") != std::string::npos);
  const std::string cs = read_file(cmp_svg);
  CHECK(count_of(cs, "<circle ") == 3 * 2 + 2);
  CHECK(cs.find("Q4_0.gguf") != std::string::npos);
  // --plot needs the KLD; a missing folder is refused before any work.
  test::check_cli_failure({"quality compare " + hf.string() + " " + q4.string() + " --metrics perplexity --plot " +
                               (d / "x.svg").string(),
                           2, "--plot"});
  test::check_cli_failure({"quality compare " + hf.string() + " " + q4.string() + " --plot " +
                               (d / "no-dir" / "x.svg").string(),
                           7, "no-dir"});

  r = test::run(lq + " analyze " + hf.string() + " --ctx 64 --calibration-samples 2 --threads 2 --no-cache " +
                "--calibration-data " + eval.string() + " -o " + (d / "m.imatrix").string() + " --plot " + heat_svg.string());
  REQUIRE(r.status == 0);
  const std::string hs = read_file(heat_svg);
  CHECK(count_of(hs, "<title>blk.") == 6 * 7);  // 6 layers x (q, k, v, output, gate, up, down)

  const std::string chromium = find_program({"chromium", "chromium-browser", "google-chrome"});
  if (chromium.empty()) {
    test::skip("no chromium on PATH: the SVGs are not rendered (apt-get install chromium)");
    return;
  }
  // Compare: 1000 x 480, the front's red; heat map: viridis's yellow end.
  const PngSummary c = summarize_png(render_png(chromium, cmp_svg, d), {0xd6, 0x27, 0x28});
  CHECK(c.width == 1000);
  CHECK(c.height == 480);
  const PngSummary h = summarize_png(render_png(chromium, heat_svg, d), {0xfd, 0xe7, 0x25});
  CHECK(h.width > 300);
  CHECK(h.height > 150);
  for (const PngSummary* s : {&c, &h}) {
    if (!s->decoded) continue;  // no zlib in this build: the sizes are all we check
    CHECK(s->non_background > 0.05);
    CHECK(s->colours > 16);
    CHECK(s->has_probe);
  }
}

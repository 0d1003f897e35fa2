/** SVG charts with no dependencies, and the Hopscotch figures built on them. */
export { barChart, heatmap, heatColor, lineChart, type BarChartSpec, type HeatmapSpec, type LineChartSpec, type LineSeries, type Marker, type Point } from './charts.js';
export { elbowIndex } from './elbow.js';
export {
  mmdChart,
  probeLossChart,
  removalCurve,
  removalCurveChart,
  rescaleLossChart,
  spectralHeatmap,
  speedChart,
  type RemovalCurveOptions,
} from './figures.js';
export { esc, niceTicks } from './svg.js';
